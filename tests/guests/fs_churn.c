/* fs_churn DIR N: open, write and close DIR/churn.txt N times (a burst of file operations,
 * for the I/O alert threshold). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    char path[512];
    snprintf(path, sizeof path, "%s/churn.txt", argv[1]);
    int n = atoi(argv[2]);
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(path, "w");
        if (!f) return 1;
        fputc('x', f);
        fclose(f);
    }
    printf("%d\n", n);
    return 0;
}
