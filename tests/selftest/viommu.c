// SPDX-License-Identifier: MIT
/*
 * iommu-kit: the vIOMMU uAPI of Linux 6.13-6.15 (IOMMU_VIOMMU_ALLOC, IOMMU_VDEVICE_ALLOC,
 * IOMMU_VEVENTQ_ALLOC, IOMMU_HWPT_ALLOC / IOMMU_HWPT_INVALIDATE on a vIOMMU) and the
 * FAULT descriptor's read/write/poll, through real ioctls on /dev/iommu against the
 * selftest mock driver, in the kselftest harness style of
 * tools/testing/selftests/iommu/iommufd.c. Debian ships the 6.12 selftest, which
 * predates the vIOMMU: the 6.15 structs are defined here when the 6.12 headers lack
 * them (include/uapi/linux/iommufd.h and drivers/iommu/iommufd/iommufd_test.h of 6.15).
 * Expected values follow the kernel: drivers/iommu/iommufd/viommu.c, eventq.c,
 * hw_pagetable.c, selftest.c (mock_viommu_alloc, mock_viommu_cache_invalidate,
 * iommufd_test_dev_check_cache, iommufd_test_trigger_vevent).
 */
#include <poll.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "iommufd_utils.h"

#ifndef IOMMU_VIOMMU_ALLOC
#define IOMMUFD_CMD_VIOMMU_ALLOC 0x90
#define IOMMUFD_CMD_VDEVICE_ALLOC 0x91
#define IOMMUFD_CMD_VEVENTQ_ALLOC 0x93

enum { IOMMU_VIOMMU_TYPE_DEFAULT = 0, IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = 1 };

struct iommu_viommu_alloc {
	__u32 size;
	__u32 flags;
	__u32 type;
	__u32 dev_id;
	__u32 hwpt_id;
	__u32 out_viommu_id;
};
#define IOMMU_VIOMMU_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VIOMMU_ALLOC)

struct iommu_vdevice_alloc {
	__u32 size;
	__u32 viommu_id;
	__u32 dev_id;
	__u32 out_vdevice_id;
	__aligned_u64 virt_id;
};
#define IOMMU_VDEVICE_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VDEVICE_ALLOC)

enum { IOMMU_VEVENTQ_FLAG_LOST_EVENTS = (1U << 0) };

struct iommufd_vevent_header {
	__u32 flags;
	__u32 sequence;
};

enum { IOMMU_VEVENTQ_TYPE_DEFAULT = 0, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1 };

struct iommu_veventq_alloc {
	__u32 size;
	__u32 flags;
	__u32 viommu_id;
	__u32 type;
	__u32 veventq_depth;
	__u32 out_veventq_id;
	__u32 out_veventq_fd;
	__u32 __reserved;
};
#define IOMMU_VEVENTQ_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VEVENTQ_ALLOC)

#define IOMMU_HWPT_DATA_ARM_SMMUV3 2
#define IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 1
struct iommu_viommu_arm_smmuv3_invalidate {
	__aligned_le64 cmd[2];
};
#endif

#ifndef IOMMU_VIOMMU_TYPE_SELFTEST
/* iommufd_test.h of 6.15 */
#define IOMMU_TEST_OP_DEV_CHECK_CACHE 16
#define IOMMU_TEST_OP_TRIGGER_VEVENT 17
#define MOCK_DEV_CACHE_ID_MAX 3
#define MOCK_DEV_CACHE_NUM 4
#define IOMMU_TEST_DEV_CACHE_DEFAULT 0xbaddad
#define IOMMU_VIOMMU_TYPE_SELFTEST 0xdeadbeef
#define IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST 0xdeadbeef
#define IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID 0xdadbeef
struct iommu_viommu_invalidate_selftest {
	__u32 flags;
	__u32 vdev_id;
	__u32 cache_id;
};
#define IOMMU_VEVENTQ_TYPE_SELFTEST 0xbeefbeef
struct iommu_viommu_event_selftest {
	__u32 virt_id;
};
#endif

/*
 * The 6.15 test-command members used here have the layout of 6.12 members:
 * check_dev_cache {id, cache} is check_iotlb {id, iotlb}; trigger_vevent {dev_id} is
 * mock_domain_replace {pt_id} (one u32 at the union's start).
 */
static int _test_cmd_dev_check_cache(int fd, __u32 idev_id, __u32 cache_id, __u32 cache)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd),
		.op = IOMMU_TEST_OP_DEV_CHECK_CACHE,
		.id = idev_id,
		.check_iotlb = { .id = cache_id, .iotlb = cache },
	};

	return ioctl(fd, IOMMU_TEST_CMD, &cmd);
}
#define test_cmd_dev_check_cache(idev_id, cache_id, cache) \
	ASSERT_EQ(0, _test_cmd_dev_check_cache(self->fd, idev_id, cache_id, cache))
#define test_cmd_dev_check_cache_all(idev_id, cache)                           \
	({                                                                     \
		for (int _i = 0; _i < MOCK_DEV_CACHE_NUM; _i++)                \
			test_cmd_dev_check_cache(idev_id, _i, cache);          \
	})

static int _test_cmd_trigger_vevent(int fd, __u32 dev_id)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd),
		.op = IOMMU_TEST_OP_TRIGGER_VEVENT,
		.mock_domain_replace = { .pt_id = dev_id },
	};

	return ioctl(fd, IOMMU_TEST_CMD, &cmd);
}

static int _test_cmd_viommu_alloc(int fd, __u32 size, __u32 flags, __u32 type, __u32 dev_id,
				  __u32 hwpt_id, __u32 *viommu_id)
{
	struct {
		struct iommu_viommu_alloc cmd;
		__u32 tail[2];
	} arg = {
		.cmd = { .size = size, .flags = flags, .type = type, .dev_id = dev_id,
			 .hwpt_id = hwpt_id },
	};
	int rc = ioctl(fd, IOMMU_VIOMMU_ALLOC, &arg);

	if (!rc && viommu_id)
		*viommu_id = arg.cmd.out_viommu_id;
	return rc;
}

static int _test_cmd_vdevice_alloc(int fd, __u32 viommu_id, __u32 dev_id, __u64 virt_id,
				   __u32 *vdev_id)
{
	struct iommu_vdevice_alloc cmd = {
		.size = sizeof(cmd), .viommu_id = viommu_id, .dev_id = dev_id, .virt_id = virt_id,
	};
	int rc = ioctl(fd, IOMMU_VDEVICE_ALLOC, &cmd);

	if (!rc && vdev_id)
		*vdev_id = cmd.out_vdevice_id;
	return rc;
}

static int _test_cmd_veventq_alloc(int fd, __u32 flags, __u32 viommu_id, __u32 type,
				   __u32 depth, __u32 reserved, __u32 *id, int *vfd)
{
	struct iommu_veventq_alloc cmd = {
		.size = sizeof(cmd), .flags = flags, .viommu_id = viommu_id, .type = type,
		.veventq_depth = depth, .__reserved = reserved,
	};
	int rc = ioctl(fd, IOMMU_VEVENTQ_ALLOC, &cmd);

	if (!rc) {
		*id = cmd.out_veventq_id;
		*vfd = (int)cmd.out_veventq_fd;
	}
	return rc;
}

static int _test_viommu_invalidate(int fd, __u32 id, void *reqs, __u32 type, __u32 len,
				   __u32 *num)
{
	return _test_cmd_hwpt_invalidate(fd, id, reqs, type, len, num);
}

static short poll_mask(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };

	if (poll(&p, 1, 0) < 0)
		return -1;
	return p.revents;
}

FIXTURE(viommu)
{
	int fd;
	__u32 ioas_id;
	__u32 stdev_id;
	__u32 hwpt_id;
	__u32 device_id;
	__u32 stdev2_id;
	__u32 device2_id;
	__u32 parent_id;
	__u32 viommu_id;
};

FIXTURE_SETUP(viommu)
{
	__u32 hwpt2;

	self->fd = open("/dev/iommu", O_RDWR);
	ASSERT_NE(-1, self->fd);
	test_ioctl_ioas_alloc(&self->ioas_id);
	test_cmd_mock_domain(self->ioas_id, &self->stdev_id, &self->hwpt_id, &self->device_id);
	test_cmd_mock_domain(self->ioas_id, &self->stdev2_id, &hwpt2, &self->device2_id);
	test_cmd_hwpt_alloc(self->device_id, self->ioas_id, IOMMU_HWPT_ALLOC_NEST_PARENT,
			    &self->parent_id);
	ASSERT_EQ(0, _test_cmd_viommu_alloc(self->fd, sizeof(struct iommu_viommu_alloc), 0,
					    IOMMU_VIOMMU_TYPE_SELFTEST, self->device_id,
					    self->parent_id, &self->viommu_id));
	ASSERT_NE(0, self->viommu_id);
}

FIXTURE_TEARDOWN(viommu)
{
	close(self->fd);
}

/* iommufd_viommu_alloc_ioctl + mock_viommu_alloc, and iommufd_fops_ioctl's size rules. */
TEST_F(viommu, viommu_alloc_errnos)
{
	const __u32 sz = sizeof(struct iommu_viommu_alloc);
	__u32 id;

	EXPECT_ERRNO(EOPNOTSUPP, _test_cmd_viommu_alloc(self->fd, sz, 1, IOMMU_VIOMMU_TYPE_SELFTEST,
							 self->device_id, self->parent_id, &id));
	EXPECT_ERRNO(EOPNOTSUPP, _test_cmd_viommu_alloc(self->fd, sz, 0, IOMMU_VIOMMU_TYPE_DEFAULT,
							 self->device_id, self->parent_id, &id));
	/* The mock driver hosts only IOMMU_VIOMMU_TYPE_SELFTEST. */
	EXPECT_ERRNO(EOPNOTSUPP, _test_cmd_viommu_alloc(self->fd, sz, 0, IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
							 self->device_id, self->parent_id, &id));
	/* Not a nesting parent: EINVAL; not a device: ENOENT. */
	EXPECT_ERRNO(EINVAL, _test_cmd_viommu_alloc(self->fd, sz, 0, IOMMU_VIOMMU_TYPE_SELFTEST,
						     self->device_id, self->hwpt_id, &id));
	EXPECT_ERRNO(ENOENT, _test_cmd_viommu_alloc(self->fd, sz, 0, IOMMU_VIOMMU_TYPE_SELFTEST,
						     self->ioas_id, self->parent_id, &id));
	/* min_size = offsetofend(out_viommu_id) = 24; a longer struct needs a zero tail. */
	EXPECT_ERRNO(EINVAL, _test_cmd_viommu_alloc(self->fd, sz - 4, 0, IOMMU_VIOMMU_TYPE_SELFTEST,
						     self->device_id, self->parent_id, &id));
	{
		struct {
			struct iommu_viommu_alloc cmd;
			__u32 tail[2];
		} arg = { .cmd = { .size = sz + 8, .type = IOMMU_VIOMMU_TYPE_SELFTEST,
				   .dev_id = self->device_id, .hwpt_id = self->parent_id },
			  .tail = { 0, 1 } };

		EXPECT_ERRNO(E2BIG, ioctl(self->fd, IOMMU_VIOMMU_ALLOC, &arg));
		arg.tail[1] = 0;
		ASSERT_EQ(0, ioctl(self->fd, IOMMU_VIOMMU_ALLOC, &arg));
		EXPECT_NE(self->viommu_id, arg.cmd.out_viommu_id);
		test_ioctl_destroy(arg.cmd.out_viommu_id);
	}
	/* The parent is held by the vIOMMU. */
	EXPECT_ERRNO(EBUSY, _test_ioctl_destroy(self->fd, self->parent_id));
	test_ioctl_destroy(self->viommu_id);
	test_ioctl_destroy(self->parent_id);
}

/* iommufd_vdevice_alloc_ioctl: virt_id per vIOMMU; destroy ordering. */
TEST_F(viommu, vdevice_alloc)
{
	__u32 vdev, vdev2, other;

	ASSERT_EQ(0, _test_cmd_vdevice_alloc(self->fd, self->viommu_id, self->device_id, 0x99, &vdev));
	EXPECT_ERRNO(EEXIST, _test_cmd_vdevice_alloc(self->fd, self->viommu_id, self->device2_id, 0x99,
						      &other));
	EXPECT_ERRNO(EEXIST, _test_cmd_vdevice_alloc(self->fd, self->viommu_id, self->device_id, 0x98,
						      &other));
	EXPECT_ERRNO(ENOENT, _test_cmd_vdevice_alloc(self->fd, self->ioas_id, self->device2_id, 0x98,
						      &other));
	ASSERT_EQ(0, _test_cmd_vdevice_alloc(self->fd, self->viommu_id, self->device2_id, 0x98, &vdev2));
	EXPECT_ERRNO(EBUSY, _test_ioctl_destroy(self->fd, self->viommu_id));
	test_ioctl_destroy(vdev);
	test_ioctl_destroy(vdev2);
	test_ioctl_destroy(self->viommu_id);
}

/* iommufd_viommu_alloc_hwpt_nested + mock_viommu_alloc_domain_nested; mock_domain_nop_attach. */
TEST_F(viommu, nested_hwpt_on_viommu)
{
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	__u64 ste[2] = { 0, 0 };
	__u32 nested, vdev, id;

	test_err_hwpt_alloc_nested(EOPNOTSUPP, self->device_id, self->viommu_id,
				   IOMMU_HWPT_ALLOC_NEST_PARENT, &id, IOMMU_HWPT_DATA_SELFTEST,
				   &data, sizeof(data));
	test_err_hwpt_alloc_nested(EOPNOTSUPP, self->device_id, self->viommu_id, 0, &id,
				   IOMMU_HWPT_DATA_NONE, NULL, 0);
	/* The mock's nested domain takes IOMMU_HWPT_DATA_SELFTEST only. */
	test_err_hwpt_alloc_nested(EOPNOTSUPP, self->device_id, self->viommu_id, 0, &id,
				   IOMMU_HWPT_DATA_ARM_SMMUV3, ste, sizeof(ste));
	test_cmd_hwpt_alloc_nested(self->device_id, self->viommu_id, 0, &nested,
				   IOMMU_HWPT_DATA_SELFTEST, &data, sizeof(data));
	test_cmd_hwpt_check_iotlb_all(nested, IOMMU_TEST_IOTLB_DEFAULT);
	/* Attaching a nested domain of a vIOMMU needs the device's vDEVICE. */
	test_err_mock_domain_replace(ENOENT, self->stdev_id, nested);
	ASSERT_EQ(0, _test_cmd_vdevice_alloc(self->fd, self->viommu_id, self->device_id, 0x99, &vdev));
	test_cmd_mock_domain_replace(self->stdev_id, nested);
	EXPECT_ERRNO(EBUSY, _test_ioctl_destroy(self->fd, self->viommu_id));
	test_cmd_mock_domain_replace(self->stdev_id, self->ioas_id);
	test_ioctl_destroy(nested);
	test_ioctl_destroy(vdev);
	test_ioctl_destroy(self->viommu_id);
}

/* IOMMU_HWPT_INVALIDATE on a vIOMMU: mock_viommu_cache_invalidate, entry_num written back. */
TEST_F(viommu, viommu_invalidate)
{
	struct iommu_viommu_invalidate_selftest inv[2] = {};
	struct iommu_viommu_arm_smmuv3_invalidate cmd = {};
	__u32 vdev, num;

	ASSERT_EQ(0, _test_cmd_vdevice_alloc(self->fd, self->viommu_id, self->device_id, 0x99, &vdev));
	test_cmd_dev_check_cache_all(self->device_id, IOMMU_TEST_DEV_CACHE_DEFAULT);
	EXPECT_ERRNO(EINVAL, _test_cmd_dev_check_cache(self->fd, self->device_id, 0, 0));
	EXPECT_ERRNO(EINVAL, _test_cmd_dev_check_cache(self->fd, self->device_id, MOCK_DEV_CACHE_NUM,
						       IOMMU_TEST_DEV_CACHE_DEFAULT));

	/* An empty array of the right type validates the type; of another type EINVAL. */
	num = 0;
	ASSERT_EQ(0, _test_viommu_invalidate(self->fd, self->viommu_id, inv,
					     IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, sizeof(*inv), &num));
	EXPECT_EQ(0, num);
	num = 0;
	EXPECT_ERRNO(EINVAL, _test_viommu_invalidate(self->fd, self->viommu_id, inv,
						     IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID,
						     sizeof(*inv), &num));
	/* SMMUv3 commands are not the mock's type: EINVAL, nothing handled. */
	num = 1;
	EXPECT_ERRNO(EINVAL, _test_viommu_invalidate(self->fd, self->viommu_id, &cmd,
						     IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
						     sizeof(cmd), &num));
	EXPECT_EQ(0, num);
	/* Unknown flags, a cache_id past MOCK_DEV_CACHE_ID_MAX, an unknown vdev_id. */
	inv[0] = (struct iommu_viommu_invalidate_selftest){ .flags = 2, .vdev_id = 0x99 };
	num = 1;
	EXPECT_ERRNO(EOPNOTSUPP, _test_viommu_invalidate(self->fd, self->viommu_id, inv,
							 IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
							 sizeof(*inv), &num));
	EXPECT_EQ(0, num);
	inv[0] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x99,
							   .cache_id = MOCK_DEV_CACHE_ID_MAX + 1 };
	num = 1;
	EXPECT_ERRNO(EINVAL, _test_viommu_invalidate(self->fd, self->viommu_id, inv,
						     IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
						     sizeof(*inv), &num));
	EXPECT_EQ(0, num);
	inv[0] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x98 };
	num = 1;
	EXPECT_ERRNO(EINVAL, _test_viommu_invalidate(self->fd, self->viommu_id, inv,
						     IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
						     sizeof(*inv), &num));
	EXPECT_EQ(0, num);
	test_cmd_dev_check_cache_all(self->device_id, IOMMU_TEST_DEV_CACHE_DEFAULT);

	/* One entry: cache[1] only. A longer entry with a zero tail is fine. */
	inv[0] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x99, .cache_id = 1 };
	num = 1;
	ASSERT_EQ(0, _test_viommu_invalidate(self->fd, self->viommu_id, inv,
					     IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, sizeof(*inv), &num));
	EXPECT_EQ(1, num);
	test_cmd_dev_check_cache(self->device_id, 0, IOMMU_TEST_DEV_CACHE_DEFAULT);
	test_cmd_dev_check_cache(self->device_id, 1, 0);
	test_cmd_dev_check_cache(self->device_id, 2, IOMMU_TEST_DEV_CACHE_DEFAULT);
	/* Second entry bad: the first is done, entry_num says 1. */
	inv[0] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x99, .cache_id = 2 };
	inv[1] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x99, .cache_id = 9 };
	num = 2;
	EXPECT_ERRNO(EINVAL, _test_viommu_invalidate(self->fd, self->viommu_id, inv,
						     IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
						     sizeof(*inv), &num));
	EXPECT_EQ(1, num);
	test_cmd_dev_check_cache(self->device_id, 2, 0);
	test_cmd_dev_check_cache(self->device_id, 3, IOMMU_TEST_DEV_CACHE_DEFAULT);
	/*
	 * FLAG_ALL clears every word, but the cache_id bound is checked first
	 * (mock_viommu_cache_invalidate), whatever the header's comment says.
	 */
	inv[0] = (struct iommu_viommu_invalidate_selftest){ .flags = IOMMU_TEST_INVALIDATE_FLAG_ALL,
							   .vdev_id = 0x99, .cache_id = 1000 };
	num = 1;
	EXPECT_ERRNO(EINVAL, _test_viommu_invalidate(self->fd, self->viommu_id, inv,
						     IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
						     sizeof(*inv), &num));
	EXPECT_EQ(0, num);
	test_cmd_dev_check_cache(self->device_id, 3, IOMMU_TEST_DEV_CACHE_DEFAULT);
	inv[0].cache_id = 3;
	num = 1;
	ASSERT_EQ(0, _test_viommu_invalidate(self->fd, self->viommu_id, inv,
					     IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, sizeof(*inv), &num));
	EXPECT_EQ(1, num);
	test_cmd_dev_check_cache_all(self->device_id, 0);
	test_cmd_dev_check_cache_all(self->device2_id, IOMMU_TEST_DEV_CACHE_DEFAULT);
	test_ioctl_destroy(vdev);
}

/* iommufd_veventq_alloc, iommufd_viommu_report_event and iommufd_veventq_fops_read. */
TEST_F(viommu, veventq)
{
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct {
		struct iommufd_vevent_header hdr;
		struct iommu_viommu_event_selftest ev;
	} __attribute__((packed)) one;
	__u8 buf[64];
	__u32 vdev, nested, q, q2;
	int qfd, qfd2;
	__u32 *w = (__u32 *)buf;

	EXPECT_ERRNO(EOPNOTSUPP, _test_cmd_veventq_alloc(self->fd, 1, self->viommu_id,
							 IOMMU_VEVENTQ_TYPE_SELFTEST, 2, 0, &q, &qfd));
	EXPECT_ERRNO(EOPNOTSUPP, _test_cmd_veventq_alloc(self->fd, 0, self->viommu_id,
							 IOMMU_VEVENTQ_TYPE_SELFTEST, 2, 1, &q, &qfd));
	EXPECT_ERRNO(EOPNOTSUPP, _test_cmd_veventq_alloc(self->fd, 0, self->viommu_id,
							 IOMMU_VEVENTQ_TYPE_DEFAULT, 2, 0, &q, &qfd));
	EXPECT_ERRNO(EINVAL, _test_cmd_veventq_alloc(self->fd, 0, self->viommu_id,
						     IOMMU_VEVENTQ_TYPE_SELFTEST, 0, 0, &q, &qfd));
	EXPECT_ERRNO(ENOENT, _test_cmd_veventq_alloc(self->fd, 0, self->ioas_id,
						     IOMMU_VEVENTQ_TYPE_SELFTEST, 2, 0, &q, &qfd));
	ASSERT_EQ(0, _test_cmd_veventq_alloc(self->fd, 0, self->viommu_id,
					     IOMMU_VEVENTQ_TYPE_SELFTEST, 2, 0, &q, &qfd));
	ASSERT_LT(2, qfd);
	EXPECT_ERRNO(EEXIST, _test_cmd_veventq_alloc(self->fd, 0, self->viommu_id,
						     IOMMU_VEVENTQ_TYPE_SELFTEST, 4, 0, &q2, &qfd2));

	/* No vIOMMU behind the device yet: ENOENT. */
	EXPECT_ERRNO(ENOENT, _test_cmd_trigger_vevent(self->fd, self->device_id));
	ASSERT_EQ(0, _test_cmd_vdevice_alloc(self->fd, self->viommu_id, self->device_id, 0x99, &vdev));
	test_cmd_hwpt_alloc_nested(self->device_id, self->viommu_id, 0, &nested,
				   IOMMU_HWPT_DATA_SELFTEST, &data, sizeof(data));
	test_cmd_mock_domain_replace(self->stdev_id, nested);

	EXPECT_EQ(0, poll_mask(qfd));
	EXPECT_EQ(0, read(qfd, buf, sizeof(buf)));
	ASSERT_EQ(0, _test_cmd_trigger_vevent(self->fd, self->device_id));
	EXPECT_EQ(POLLIN, poll_mask(qfd));
	/* Too small for header + data: nothing read, the record stays. */
	EXPECT_EQ(0, read(qfd, buf, sizeof(one) - 1));
	ASSERT_EQ(sizeof(one), read(qfd, &one, sizeof(one)));
	EXPECT_EQ(0, one.hdr.flags);
	EXPECT_EQ(0, one.hdr.sequence);
	EXPECT_EQ(0x99, one.ev.virt_id);
	EXPECT_EQ(0, poll_mask(qfd));

	/* Depth 2: the third event is lost, a LOST_EVENTS header (no data) with the next sequence. */
	ASSERT_EQ(0, _test_cmd_trigger_vevent(self->fd, self->device_id));
	ASSERT_EQ(0, _test_cmd_trigger_vevent(self->fd, self->device_id));
	ASSERT_EQ(0, _test_cmd_trigger_vevent(self->fd, self->device_id));
	memset(buf, 0xcc, sizeof(buf));
	ASSERT_EQ(12 + 12 + 8, read(qfd, buf, sizeof(buf)));
	EXPECT_EQ(0, w[0]);
	EXPECT_EQ(1, w[1]);
	EXPECT_EQ(0x99, w[2]);
	EXPECT_EQ(0, w[3]);
	EXPECT_EQ(2, w[4]);
	EXPECT_EQ(0x99, w[5]);
	EXPECT_EQ(IOMMU_VEVENTQ_FLAG_LOST_EVENTS, w[6]);
	EXPECT_EQ(3, w[7]);
	EXPECT_EQ(0xcccccccc, w[8]);
	EXPECT_EQ(0, read(qfd, buf, sizeof(buf)));
	/* A vEVENTQ has no write (vfs_write without f_op->write: EINVAL). */
	EXPECT_ERRNO(EINVAL, write(qfd, buf, 8));

	/* Open file: the vEVENTQ is busy, and it holds the vIOMMU. */
	EXPECT_ERRNO(EBUSY, _test_ioctl_destroy(self->fd, q));
	EXPECT_ERRNO(EBUSY, _test_ioctl_destroy(self->fd, self->viommu_id));
	close(qfd);
	test_ioctl_destroy(q);
	/* No vEVENTQ of the type: iommufd_viommu_report_event EOPNOTSUPP. */
	EXPECT_ERRNO(EOPNOTSUPP, _test_cmd_trigger_vevent(self->fd, self->device_id));
	test_cmd_mock_domain_replace(self->stdev_id, self->ioas_id);
	test_ioctl_destroy(nested);
	test_ioctl_destroy(vdev);
	test_ioctl_destroy(self->viommu_id);
}

/* poll(2) sleeps until an event arrives (wake_up_interruptible in iommufd_vevent_handler) or times out. */
TEST_F(viommu, veventq_poll_wait)
{
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommufd_vevent_header hdr[2];
	struct pollfd p;
	__u32 vdev, nested, q;
	int qfd, status;
	pid_t child;

	ASSERT_EQ(0, _test_cmd_veventq_alloc(self->fd, 0, self->viommu_id,
					     IOMMU_VEVENTQ_TYPE_SELFTEST, 4, 0, &q, &qfd));
	ASSERT_EQ(0, _test_cmd_vdevice_alloc(self->fd, self->viommu_id, self->device_id, 0x99, &vdev));
	test_cmd_hwpt_alloc_nested(self->device_id, self->viommu_id, 0, &nested,
				   IOMMU_HWPT_DATA_SELFTEST, &data, sizeof(data));
	test_cmd_mock_domain_replace(self->stdev_id, nested);

	/* Nothing queued: a 20 ms poll times out with 0. */
	p = (struct pollfd){ .fd = qfd, .events = POLLIN };
	EXPECT_EQ(0, poll(&p, 1, 20));
	EXPECT_EQ(0, p.revents);

	/* Another process (sharing the iommufd) triggers an event while this one waits. */
	child = fork();
	ASSERT_NE(-1, child);
	if (child == 0) {
		usleep(50000);
		_exit(_test_cmd_trigger_vevent(self->fd, self->device_id) ? 1 : 0);
	}
	p = (struct pollfd){ .fd = qfd, .events = POLLIN };
	EXPECT_EQ(1, poll(&p, 1, 5000));
	EXPECT_EQ(POLLIN, p.revents);
	ASSERT_EQ(child, waitpid(child, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
	EXPECT_EQ(12, read(qfd, hdr, sizeof(hdr)));
	EXPECT_EQ(0, hdr[0].sequence);
	close(qfd);
	test_cmd_mock_domain_replace(self->stdev_id, self->ioas_id);
	test_ioctl_destroy(q);
	test_ioctl_destroy(nested);
	test_ioctl_destroy(vdev);
}

/* IOMMU_FAULT_QUEUE_ALLOC's file: iommufd_fault_fops_read / _write / poll. */
TEST_F(viommu, fault_fd)
{
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommu_test_cmd trig = {
		.size = sizeof(trig),
		.op = IOMMU_TEST_OP_TRIGGER_IOPF,
		.trigger_iopf = { .dev_id = self->device_id, .pasid = 1, .grpid = 2,
				  .perm = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE,
				  .addr = 0xdeadbeaf },
	};
	struct iommu_hwpt_pgfault f[2];
	struct iommu_hwpt_page_response r[2];
	__u32 fault_id, fault_fd, vdev, nested;

	test_ioctl_fault_alloc(&fault_id, &fault_fd);
	ASSERT_EQ(0, _test_cmd_vdevice_alloc(self->fd, self->viommu_id, self->device_id, 0x99, &vdev));
	test_cmd_hwpt_alloc_iopf(self->device_id, self->viommu_id, fault_id, IOMMU_HWPT_FAULT_ID_VALID,
				 &nested, IOMMU_HWPT_DATA_SELFTEST, &data, sizeof(data));
	test_cmd_mock_domain_replace(self->stdev_id, nested);

	EXPECT_EQ(POLLOUT, poll_mask(fault_fd));
	EXPECT_EQ(0, read(fault_fd, f, sizeof(f[0])));
	ASSERT_EQ(0, ioctl(self->fd, IOMMU_TEST_CMD, &trig));
	EXPECT_EQ(POLLIN | POLLOUT, poll_mask(fault_fd));
	/* Not a whole number of records: ESPIPE. */
	EXPECT_ERRNO(ESPIPE, read(fault_fd, f, sizeof(f[0]) - 1));
	memset(f, 0xcc, sizeof(f));
	ASSERT_EQ(sizeof(f[0]), read(fault_fd, f, sizeof(f)));
	EXPECT_EQ(IOMMU_PGFAULT_FLAGS_PASID_VALID | IOMMU_PGFAULT_FLAGS_LAST_PAGE, f[0].flags);
	EXPECT_EQ(self->device_id, f[0].dev_id);
	EXPECT_EQ(1, f[0].pasid);
	EXPECT_EQ(2, f[0].grpid);
	EXPECT_EQ(IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE, f[0].perm);
	EXPECT_EQ(0, f[0].__reserved);
	EXPECT_EQ(0xdeadbeaf, f[0].addr);
	EXPECT_EQ(0, f[0].length);
	EXPECT_EQ(1, f[0].cookie);
	EXPECT_EQ(0xcccccccc, f[1].flags);
	EXPECT_EQ(POLLOUT, poll_mask(fault_fd));

	/* Responses: ESPIPE for a partial one; a bad code or an unknown cookie EINVAL. */
	r[0] = (struct iommu_hwpt_page_response){ .cookie = 1, .code = 2 };
	EXPECT_ERRNO(ESPIPE, write(fault_fd, r, sizeof(r[0]) - 1));
	EXPECT_ERRNO(EINVAL, write(fault_fd, r, sizeof(r[0])));
	r[0] = (struct iommu_hwpt_page_response){ .cookie = 7, .code = IOMMUFD_PAGE_RESP_SUCCESS };
	EXPECT_ERRNO(EINVAL, write(fault_fd, r, sizeof(r[0])));
	/* Two responses, the second bad: the first is answered and counted. */
	r[0] = (struct iommu_hwpt_page_response){ .cookie = 1, .code = IOMMUFD_PAGE_RESP_SUCCESS };
	r[1] = (struct iommu_hwpt_page_response){ .cookie = 1, .code = IOMMUFD_PAGE_RESP_SUCCESS };
	EXPECT_EQ(sizeof(r[0]), write(fault_fd, r, sizeof(r)));
	EXPECT_ERRNO(EINVAL, write(fault_fd, r, sizeof(r[0])));

	/* Cookies are allocated at read time, the lowest free one first. */
	ASSERT_EQ(0, ioctl(self->fd, IOMMU_TEST_CMD, &trig));
	ASSERT_EQ(0, ioctl(self->fd, IOMMU_TEST_CMD, &trig));
	ASSERT_EQ(2 * sizeof(f[0]), read(fault_fd, f, sizeof(f)));
	EXPECT_EQ(1, f[0].cookie);
	EXPECT_EQ(2, f[1].cookie);
	r[0] = (struct iommu_hwpt_page_response){ .cookie = 2, .code = IOMMUFD_PAGE_RESP_INVALID };
	r[1] = (struct iommu_hwpt_page_response){ .cookie = 1, .code = IOMMUFD_PAGE_RESP_SUCCESS };
	EXPECT_EQ(sizeof(r), write(fault_fd, r, sizeof(r)));

	/* The open file holds the FAULT object. */
	EXPECT_ERRNO(EBUSY, _test_ioctl_destroy(self->fd, fault_id));
	test_cmd_mock_domain_replace(self->stdev_id, self->ioas_id);
	test_ioctl_destroy(nested);
	close(fault_fd);
	test_ioctl_destroy(fault_id);
	test_ioctl_destroy(vdev);
}

TEST_HARNESS_MAIN
