/* errname(): the name of an errno value, shared by the file-system test guests so their
 * transcripts read the same (a number for any errno not listed). */
#ifndef FS_ERRNAME_H
#define FS_ERRNAME_H
#include <errno.h>
#include <stdio.h>

static const char *errname(int e) {
    static char buf[16];
    switch (e) {
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ENOTEMPTY: return "ENOTEMPTY";
    case EACCES: return "EACCES";
    case ECONNABORTED: return "ECONNABORTED";
    case EPERM: return "EPERM";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ELOOP: return "ELOOP";
    case ENOTCAPABLE: return "ENOTCAPABLE";
    case EROFS: return "EROFS";
    case EXDEV: return "EXDEV";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOTSUP: return "ENOTSUP";
    case ESPIPE: return "ESPIPE";
    case EIO: return "EIO";
    case EMLINK: return "EMLINK";
    default: snprintf(buf, sizeof buf, "%d", e); return buf;
    }
}

#endif
