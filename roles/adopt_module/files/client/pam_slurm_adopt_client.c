/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * pam_slurm_adopt_client.c - PAM account module, the sshd side of the adoption
 * service of hpc.slurm_adopt (protocol and security: docs/service.md).
 * Copyright (c) hpc.slurm_adopt contributors
 * GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
 *
 * It decides nothing. It sends the module options, the PAM items and sshd's
 * SLURM_CONF/SLURMD_NODENAME to the Python service, does what the service asks
 * (a PAM message, a syslog line, pam_putenv, setns, "go" before it adopts) and
 * returns the service's PAM code. When the service cannot answer, it runs the
 * same Python code as its child over a socketpair; only when neither answers
 * does it apply action_generic_failure. The whole call takes at most SAF_TOTAL_MS.
 * build.sh compiles in SAF_SOCKET, SAF_PYTHON and SAF_LAUNCHER.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#define PAM_SM_ACCOUNT
#include <security/pam_modules.h>
#include <security/pam_ext.h>

#ifndef SAF_TOTAL_MS            /* the whole call: service, then fallback child */
#define SAF_TOTAL_MS 30000
#endif
#ifndef SAF_SILENCE_MS          /* a service silent this long (before "go") is stuck */
#define SAF_SILENCE_MS 3000
#endif

enum { VERSION = 1, HDR = 8, MAXPKT = 65536, MAXFIELD = 4096, MAXARGS = 64, GO_ON = -2 };
enum { M_HEARTBEAT = 1, M_CONV, M_PUTENV, M_PREPARE, M_SETNS, M_RESULT, M_REFUSED, M_SYSLOG,
       M_REQUEST = 16, M_GO, M_SETNS_RESULT, M_LOGGED };
enum { F_ARG = 1, F_USER, F_SERVICE, F_RHOST, F_TTY, F_RUSER, F_ENV, F_BUDGET, F_FLAGS };

struct req { size_t len; unsigned char b[MAXPKT]; };

static long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Appends a request field (u8 tag, u16 length, value); 1 over the protocol's limits. */
static int field(struct req *r, int tag, const void *val, size_t len)
{
	if (len > MAXFIELD || r->len + 3 + len > sizeof(r->b))
		return 1;
	r->b[r->len] = tag, r->b[r->len + 1] = len >> 8, r->b[r->len + 2] = len;
	memcpy(r->b + r->len + 3, val, len);
	r->len += 3 + len;
	return 0;
}

static int build(pam_handle_t *pamh, int flags, int argc, const char **argv, struct req *r)
{
	static const int items[] = { PAM_USER, F_USER, PAM_SERVICE, F_SERVICE, PAM_RHOST,
				     F_RHOST, PAM_TTY, F_TTY, PAM_RUSER, F_RUSER };
	static const char *const envs[] = { "SLURM_CONF", "SLURMD_NODENAME" };
	unsigned char num[4] = { 0 };
	char kv[MAXFIELD + 1];
	const void *item;
	int i, bad = argc > MAXARGS;

	r->len = HDR;
	bad |= field(r, F_BUDGET, num, 4);      /* at offset HDR + 3, set by exchange() */
	put32(num, (uint32_t)flags);
	bad |= field(r, F_FLAGS, num, 4);
	for (i = 0; i < argc && !bad; i++)
		bad |= field(r, F_ARG, argv[i], strlen(argv[i]));
	for (i = 0; i < 10; i += 2)
		if (pam_get_item(pamh, items[i], &item) == PAM_SUCCESS && item)
			bad |= field(r, items[i + 1], item, strlen(item));
	for (i = 0; i < 2; i++)
		if ((item = getenv(envs[i])))
			bad |= field(r, F_ENV, kv, snprintf(kv, sizeof(kv), "%s=%s", envs[i], (char *)item));
	r->b[0] = VERSION, r->b[1] = M_REQUEST, r->b[2] = r->b[3] = 0;
	put32(r->b + 4, r->len - HDR);
	return bad;
}

/* poll() for one event until the deadline (monotonic ms); 0 when ready. */
static int wait_fd(int fd, short events, long deadline)
{
	struct pollfd p = { fd, events, 0 };
	long left;
	int n;

	do {
		left = deadline - now_ms();
		n = poll(&p, 1, left > 0 ? (int)left : 0);
	} while (n < 0 && errno == EINTR);
	return n == 1 ? 0 : -1;
}

static int send_pkt(int fd, const unsigned char *b, size_t len, long deadline)
{
	if (wait_fd(fd, POLLOUT, deadline))
		return -1;
	return send(fd, b, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len ? 0 : -1;
}

/* M_GO, M_LOGGED (no payload) or M_SETNS_RESULT (an errno); GO_ON once sent. */
static int answer(int fd, int type, int32_t val, long deadline)
{
	unsigned char b[HDR + 4] = { VERSION, (unsigned char)type, 0, 0 };
	size_t len = type == M_SETNS_RESULT ? 4 : 0;

	put32(b + 4, len);
	put32(b + 8, (uint32_t)val);
	return send_pkt(fd, b, HDR + len, deadline) ? -1 : GO_ON;
}

/*
 * Does what the peer asks until its result. Returns the PAM code, or -1 when
 * there is none: silence (before "go"), the deadline, the peer closing, a
 * malformed message, a refusal. *committed is set once "go" is sent: from then
 * on the peer may adopt this process, so no other peer may be asked.
 */
static int converse(pam_handle_t *pamh, int fd, long deadline, int silence, int *committed)
{
	unsigned char b[HDR + MAXFIELD + 2], *text = b + HDR + 1;
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
	struct iovec iov = { b, sizeof(b) - 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	int nfd, rc = GO_ON;
	ssize_t n;
	size_t len;
	long until;

	while (rc == GO_ON) {
		until = now_ms() + silence;
		if (wait_fd(fd, POLLIN, silence && !*committed && until < deadline ? until : deadline))
			return -1;
		m.msg_control = ctl.buf, m.msg_controllen = sizeof(ctl.buf);
		n = recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		nfd = -1;
		c = n >= 0 ? CMSG_FIRSTHDR(&m) : NULL;
		if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS
		    && c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&nfd, CMSG_DATA(c), sizeof(int));
		len = n >= HDR ? (size_t)n - HDR : 0;
		if (n < HDR || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || b[0] != VERSION
		    || b[2] || b[3] || get32(b + 4) != len || (nfd >= 0) != (b[1] == M_SETNS))
			b[1] = 0;                       /* malformed */
		b[n > 0 ? n : 0] = 0;
		/* texts: u8 style/severity at b[HDR], then the text, without NULs */
		if ((b[1] == M_CONV || b[1] == M_SYSLOG) && (len < 2 || memchr(text, 0, len - 1)))
			b[1] = 0;
		rc = -1;
		if (b[1] == M_HEARTBEAT) {
			rc = GO_ON;
		} else if (b[1] == M_CONV && (b[HDR] == PAM_ERROR_MSG || b[HDR] == PAM_TEXT_INFO)) {
			pam_prompt(pamh, b[HDR], NULL, "%s", (char *)text);
			rc = GO_ON;
		} else if (b[1] == M_SYSLOG && b[HDR] < 8) {    /* pam_syslog's: sshd's ident and pid */
			syslog(LOG_AUTHPRIV | b[HDR], "%s", (char *)text);
			rc = answer(fd, M_LOGGED, 0, deadline);
		} else if (b[1] == M_PUTENV && len > 1 && b[HDR] != '=' && strchr((char *)b + HDR, '=')
			   && !memchr(b + HDR, 0, len) && pam_putenv(pamh, (char *)b + HDR) == PAM_SUCCESS) {
			rc = GO_ON;
		} else if (b[1] == M_PREPARE) {                 /* from now on it may adopt us */
			if ((rc = answer(fd, M_GO, 0, deadline)) == GO_ON)
				*committed = 1;
		} else if (b[1] == M_SETNS && len == 4) {
			rc = answer(fd, M_SETNS_RESULT, setns(nfd, (int)get32(b + HDR)) ? errno : 0, deadline);
		} else if (b[1] == M_RESULT && len == 4 && get32(b + HDR) < _PAM_RETURN_VALUES) {
			rc = (int)get32(b + HDR);
		} else if (b[1] == M_REFUSED) {
			pam_syslog(pamh, LOG_ERR, "adoption service: %s", (char *)b + HDR);
		}
		if (nfd >= 0)
			close(nfd);
	}
	return rc;
}

/* Sends the request with the time the peer may take, then converses. */
static int exchange(pam_handle_t *pamh, int fd, struct req *r, long budget_end,
		    long deadline, int silence, int *committed)
{
	long budget = budget_end - now_ms();

	if (budget <= 0)
		return -1;
	put32(r->b + HDR + 3, (uint32_t)budget);
	if (send_pkt(fd, r->b, r->len, deadline))
		return -1;
	return converse(pamh, fd, deadline, silence, committed);
}

/* The service's socket; -1 when it is missing, refuses, is full or not root's. */
static int connect_service(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX, .sun_path = SAF_SOCKET };
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd >= 0 && (connect(fd, (struct sockaddr *)&a, sizeof(a))
			|| getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) || cr.uid != 0)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* The fallback: python3 -I -S <launcher> child, the request over a socketpair. */
static int run_child(pam_handle_t *pamh, struct req *r, long deadline, int *committed)
{
	char *const args[] = { "python3", "-I", "-S", SAF_LAUNCHER, "child", NULL };
	char *const env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	int sv[2], rc = -1, st, i, fd;
	sigset_t none;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -1;
	pid = fork();
	if (pid == 0) {
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd < 0 || dup2(sv[1], 0) != 0 || fcntl(0, F_SETFD, 0)
		    || dup2(fd, 1) != 1 || dup2(fd, 2) != 2)
			_exit(127);
#ifdef SYS_close_range
		if (syscall(SYS_close_range, 3U, ~0U, 0U))
#endif
			for (i = 3; i < sysconf(_SC_OPEN_MAX) && i < 65536; i++)
				close(i);
		execve(SAF_PYTHON, args, env);
		_exit(127);
	}
	close(sv[1]);
	if (pid > 0) {
		rc = exchange(pamh, sv[0], r, deadline - 1000, deadline, 0, committed);
		if (waitpid(pid, &st, WNOHANG) == 0)    /* still ours: its pid is not reused */
			kill(pid, SIGKILL);
		for (i = 0; i < 2000 && waitpid(pid, &st, WNOHANG) == 0; i++)
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	close(sv[0]);
	return rc;
}

/* action_generic_failure=, matched as the C module matches it (default ignore):
 * the one thing decided here, for when no Python answers at all. */
static int failure_rc(int argc, const char **argv)
{
	static const char *const names[] = { "allow", "ignore", "deny" };
	static const int codes[] = { PAM_SUCCESS, PAM_IGNORE, PAM_PERM_DENIED };
	int i, j, rc = PAM_IGNORE;

	for (i = 0; i < argc; i++)
		for (j = 0; j < 3 && !strncasecmp(argv[i], "action_generic_failure=", 23); j++)
			if (!strncasecmp(argv[i] + 23, names[j], strlen(names[j])))
				rc = codes[j];
	return rc;
}

PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	long deadline = now_ms() + SAF_TOTAL_MS;
	struct req *r = malloc(sizeof(*r));
	int rc = -1, committed = 0, fd;

	if (!r || build(pamh, flags, argc, argv, r)) {
		pam_syslog(pamh, LOG_ERR, "request over the protocol's limits (or no memory)");
	} else {
		if ((fd = connect_service()) >= 0) {
			rc = exchange(pamh, fd, r, deadline - SAF_SILENCE_MS - 1000, deadline,
				      SAF_SILENCE_MS, &committed);
			close(fd);
		}
		if (rc < 0 && !committed) {
			pam_syslog(pamh, LOG_WARNING, "adoption service %s did not answer; "
				   "running %s", SAF_SOCKET, SAF_LAUNCHER);
			rc = run_child(pamh, r, deadline, &committed);
		}
	}
	free(r);
	if (rc < 0) {
		pam_syslog(pamh, LOG_ERR, "no answer from the adoption service or its fallback; "
			   "applying action_generic_failure");
		rc = failure_rc(argc, argv);
	}
	return rc;
}
