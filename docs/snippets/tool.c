/* A C guest of the documentation's monitoring and auto-scaler examples: it fills 8 MiB of
 * memory, then writes a line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    size_t size = 8u << 20;
    char *block = malloc(size);
    if (block == NULL) return 1;
    memset(block, 1, size);
    printf("touched %zu bytes\n", size);
    free(block);
    return 0;
}
