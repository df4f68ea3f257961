// SPDX-License-Identifier: MIT
/*
 * iommu-kit preload: a /dev/iommu in user space.
 *
 * LD_PRELOAD'ed into a process (the kernel's iommufd selftest), it turns
 * open("/dev/iommu") into a connection to the iommu-kit server (a Unix socket named by
 * IOMMU_KIT_SOCKET) and forwards every ioctl on such a descriptor as
 * (pid, cmd, arg pointer); the server reads and writes the argument struct in this
 * process through /proc/PID/mem, and answers with an errno. An ioctl that creates a
 * descriptor (IOMMU_FAULT_QUEUE_ALLOC, the selftest's CREATE_ACCESS) is answered with
 * the object to attach: this library opens one more connection for it and stores its
 * number in the struct, as the kernel stores the new fd. read/write/close/dup/fork of
 * all these descriptors are the plain socket calls, so fork and close behave as file
 * references do. Wire format: packages/host/src/selftest-mock/server.ts.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_FD 65536
/* 0: not ours; otherwise the server's file token. */
static uint32_t fd_token[MAX_FD];
/* Descriptors of objects (fault queue, access) this library created. */
static uint8_t fd_object[MAX_FD];

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_close)(int);

static void init(void)
{
	if (!real_open) {
		real_open = dlsym(RTLD_NEXT, "open");
		real_openat = dlsym(RTLD_NEXT, "openat");
		real_ioctl = dlsym(RTLD_NEXT, "ioctl");
		real_close = dlsym(RTLD_NEXT, "close");
	}
}

static int full_write(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static int full_read(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static int connect_server(void)
{
	const char *path = getenv("IOMMU_KIT_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s;

	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENOENT;
		return -1;
	}
	strcpy(sa.sun_path, path);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		real_close(s);
		errno = e == ENOENT || e == ECONNREFUSED ? ENODEV : e;
		return -1;
	}
	return s;
}

static int open_iommu(void)
{
	uint32_t msg[2] = { 1, (uint32_t)getpid() };
	uint32_t token;
	int s = connect_server();

	if (s < 0)
		return -1;
	if (full_write(s, msg, sizeof(msg)) || full_read(s, &token, 4)) {
		real_close(s);
		errno = EIO;
		return -1;
	}
	if (s < MAX_FD)
		fd_token[s] = token;
	return s;
}

static int is_dev_iommu(const char *path)
{
	return path && strcmp(path, "/dev/iommu") == 0;
}

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;

	init();
	if (is_dev_iommu(path))
		return open_iommu();
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int __open_2(const char *path, int flags)
{
	return open(path, flags);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;

	init();
	if (is_dev_iommu(path))
		return open_iommu();
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int close(int fd)
{
	init();
	if (fd >= 0 && fd < MAX_FD) {
		fd_token[fd] = 0;
		if (fd_object[fd]) {
			/*
			 * The kernel releases the object when the file's last reference goes;
			 * tell the server now so the release is ordered before this process's
			 * next ioctl, as fput() is. One byte and its echo.
			 */
			uint8_t b = 0xff;

			fd_object[fd] = 0;
			if (full_write(fd, &b, 1) == 0)
				full_read(fd, &b, 1);
		}
	}
	return real_close(fd);
}

/* A descriptor for a new object: one more connection, attached to it. */
static int attach_fd(uint32_t token, uint32_t kind, uint32_t obj)
{
	uint32_t msg[6] = { 2, (uint32_t)getpid(), token, kind, obj, 0 };
	uint32_t ack;
	int s = connect_server();

	if (s < 0)
		return -1;
	msg[5] = (uint32_t)s;
	if (full_write(s, msg, sizeof(msg)) || full_read(s, &ack, 4)) {
		real_close(s);
		return -1;
	}
	if (s < MAX_FD && kind == 2)
		fd_object[s] = 1;
	return s;
}

int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	void *arg;
	uint32_t msg[6];
	uint32_t rep[6];
	uint64_t a;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	init();
	if (fd < 0 || fd >= MAX_FD || !fd_token[fd])
		return real_ioctl(fd, request, arg);
	a = (uint64_t)(uintptr_t)arg;
	msg[0] = 3;
	msg[1] = (uint32_t)getpid();
	msg[2] = (uint32_t)request;
	msg[3] = 0;
	msg[4] = (uint32_t)a;
	msg[5] = (uint32_t)(a >> 32);
	if (full_write(fd, msg, sizeof(msg)) || full_read(fd, rep, sizeof(rep))) {
		errno = EIO;
		return -1;
	}
	if (rep[0]) {
		errno = (int)rep[0];
		return -1;
	}
	if (rep[1]) {
		int nfd = attach_fd(rep[4], rep[1], rep[2]);

		if (nfd < 0) {
			errno = EMFILE;
			return -1;
		}
		*(uint32_t *)((char *)arg + rep[3]) = (uint32_t)nfd;
	}
	return (int)rep[5];
}
