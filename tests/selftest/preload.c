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
 * number in the struct, as the kernel stores the new fd. read(2), write(2) and poll(2)
 * on the descriptor of a FAULT object or a vEVENTQ (IOMMU_VEVENTQ_ALLOC) are forwarded
 * as (pid, count, buffer pointer) and answered with the kernel's return value
 * (iommufd_fault_fops_read/_write, iommufd_veventq_fops_read, iommufd_eventq_fops_poll);
 * dup/fork of all these descriptors are the plain socket calls. Wire format:
 * packages/host/src/selftest-mock/server.ts.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
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
/* Descriptors of objects this library created: their kind (1 fault, 2 access, 3 vEVENTQ). */
static uint8_t fd_object[MAX_FD];

enum { KIND_FAULT = 1, KIND_ACCESS = 2, KIND_VEVENTQ = 3 };
enum { OP_READ = 4, OP_WRITE = 5, OP_POLL = 6, OP_CLOSE = 7 };

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_close)(int);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static int (*real_ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);

static void init(void)
{
	if (!real_open) {
		real_open = dlsym(RTLD_NEXT, "open");
		real_openat = dlsym(RTLD_NEXT, "openat");
		real_ioctl = dlsym(RTLD_NEXT, "ioctl");
		real_close = dlsym(RTLD_NEXT, "close");
		real_read = dlsym(RTLD_NEXT, "read");
		real_write = dlsym(RTLD_NEXT, "write");
		real_poll = dlsym(RTLD_NEXT, "poll");
		real_ppoll = dlsym(RTLD_NEXT, "ppoll");
	}
}

static int full_write(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = real_write(fd, p, len);

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
		ssize_t n = real_read(fd, p, len);

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
	init();
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
		if (fd_object[fd] == KIND_ACCESS) {
			/*
			 * The kernel releases the object when the file's last reference goes;
			 * tell the server now so the release is ordered before this process's
			 * next ioctl, as fput() is. One byte and its echo.
			 */
			uint8_t b = 0xff;

			fd_object[fd] = 0;
			if (full_write(fd, &b, 1) == 0)
				full_read(fd, &b, 1);
		} else if (fd_object[fd]) {
			/* An event queue's file reference (iommufd_eventq_fops_release), likewise ordered. */
			uint32_t msg[6] = { OP_CLOSE, (uint32_t)getpid(), 0, 0, 0, 0 };
			int32_t ret;

			fd_object[fd] = 0;
			if (full_write(fd, msg, sizeof(msg)) == 0)
				full_read(fd, &ret, 4);
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
	if (s < MAX_FD)
		fd_object[s] = (uint8_t)kind;
	return s;
}

static int is_eventq(int fd)
{
	return fd >= 0 && fd < MAX_FD &&
	       (fd_object[fd] == KIND_FAULT || fd_object[fd] == KIND_VEVENTQ);
}

/* One request on an event queue's connection; returns the kernel's ssize_t. */
static ssize_t eventq_call(int fd, uint32_t op, const void *buf, size_t count)
{
	uint64_t a = (uint64_t)(uintptr_t)buf;
	uint32_t msg[6] = { op, (uint32_t)getpid(), (uint32_t)count, 0, (uint32_t)a,
			    (uint32_t)(a >> 32) };
	int32_t ret;

	if (count > 0x7fffffff)
		msg[2] = 0x7fffffff;
	if (full_write(fd, msg, sizeof(msg)) || full_read(fd, &ret, 4)) {
		errno = EIO;
		return -1;
	}
	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return ret;
}

ssize_t read(int fd, void *buf, size_t count)
{
	init();
	if (is_eventq(fd))
		return eventq_call(fd, OP_READ, buf, count);
	return real_read(fd, buf, count);
}

ssize_t write(int fd, const void *buf, size_t count)
{
	init();
	if (is_eventq(fd))
		return eventq_call(fd, OP_WRITE, buf, count);
	return real_write(fd, buf, count);
}

/*
 * poll(2) over a mix of descriptors: the event queues' masks come from the server
 * (iommufd_eventq_fops_poll), the others from the real poll; without a ready one the
 * call sleeps in 1 ms steps until the timeout (-1: forever).
 */
static int mixed_poll(struct pollfd *fds, nfds_t nfds, int timeout_ms)
{
	struct timespec start, now;
	int ours = 0;

	for (nfds_t i = 0; i < nfds; i++)
		ours |= is_eventq(fds[i].fd);
	if (!ours)
		return real_poll(fds, nfds, timeout_ms);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		int ready = 0;

		for (nfds_t i = 0; i < nfds; i++) {
			fds[i].revents = 0;
			if (fds[i].fd < 0)
				continue;
			if (is_eventq(fds[i].fd)) {
				ssize_t mask = eventq_call(fds[i].fd, OP_POLL, NULL, 0);

				if (mask < 0)
					fds[i].revents = POLLERR;
				else
					fds[i].revents = (short)(mask & (fds[i].events | POLLERR | POLLHUP));
			} else {
				struct pollfd one = fds[i];

				if (real_poll(&one, 1, 0) > 0)
					fds[i].revents = one.revents;
			}
			if (fds[i].revents)
				ready++;
		}
		if (ready || timeout_ms == 0)
			return ready;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (timeout_ms > 0 &&
		    (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >=
			    timeout_ms)
			return 0;
		usleep(1000);
	}
}

int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	init();
	return mixed_poll(fds, nfds, timeout);
}

int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo, const sigset_t *sigmask)
{
	int ours = 0;

	init();
	for (nfds_t i = 0; i < nfds; i++)
		ours |= is_eventq(fds[i].fd);
	if (!ours)
		return real_ppoll(fds, nfds, tmo, sigmask);
	return mixed_poll(fds, nfds, tmo ? (int)(tmo->tv_sec * 1000 + tmo->tv_nsec / 1000000) : -1);
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
