"""The limits sem checks before anything is made, in a module with no imports (the
verbs read them before deciding whether ctypes or posix_ipc is needed)."""

SEMVMX = 32767  # the largest SysV semaphore value (include/uapi/linux/sem.h)
SEM_VALUE_MAX = 2**31 - 1  # the largest POSIX semaphore value on Linux
NAME_MAX = 251  # a POSIX name's bytes after "/": 255 for the file, less glibc's "sem."
