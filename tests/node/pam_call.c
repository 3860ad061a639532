/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * pam_call: one PAM account transaction, for the node tests only (never
 * shipped). It makes no decision: it calls the real libpam and prints what
 * came back, one item per line:
 *
 *   rc <int>            pam_acct_mgmt()'s return code
 *   msg <style> <text>  each conversation message
 *   env <NAME=VALUE>    pam_getenvlist() afterwards
 *   cg <line>           /proc/self/cgroup afterwards (the job this process landed in)
 *   marker yes|no       whether MARKER exists afterwards (a file in the job's private /tmp)
 *
 * Usage: pam_call [-l PORT] [-w] [-m MARKER] SERVICE USER
 * With -l it first listens on 127.0.0.1:PORT ([::1]:PORT for v6:PORT,
 * ADDR:PORT for another IPv4 address),
 * prints "listening", accepts one connection ("accepted"; with -w it then
 * waits for a line on stdin: the test breaks something first) and keeps it open during the
 * transaction: the process then holds an inbound TCP connection as sshd does,
 * which both pam_slurm_adopt modules find in /proc/self/fd for the callerid
 * RPC. Python cannot host pam_python (two interpreters in one process
 * crash), hence C; the Python evaluator (plugins/module_utils/_pam_eval.py)
 * does the rest of the project's PAM evaluation.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <getopt.h>

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
	(void) data;
	*resp = calloc(n, sizeof(**resp));
	if (!*resp)
		return PAM_BUF_ERR;
	for (int i = 0; i < n; i++)
		printf("msg %d %s\n", msg[i]->msg_style, msg[i]->msg ? msg[i]->msg : "");
	return PAM_SUCCESS;
}

static int accept_one(const char *spec)
{
	int v6 = !strncmp(spec, "v6:", 3);
	const char *colon = strrchr(spec, ':');
	int port = atoi(colon ? colon + 1 : spec), one = 1, fd, conn;
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	char addr[64] = "127.0.0.1";
	struct pollfd p;

	if (colon && !v6 && colon - spec < (long) sizeof(addr))
		snprintf(addr, colon - spec + 1, "%s", spec);
	fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	inet_pton(AF_INET, addr, &a4.sin_addr);
	inet_pton(AF_INET6, "::1", &a6.sin6_addr);
	if (fd < 0 || (v6 ? bind(fd, (void *) &a6, sizeof(a6)) : bind(fd, (void *) &a4, sizeof(a4)))
	    || listen(fd, 1)) {
		perror("listen");
		exit(2);
	}
	printf("listening\n");
	fflush(stdout);
	p.fd = fd;
	p.events = POLLIN;
	if (poll(&p, 1, 60000) != 1 || (conn = accept(fd, NULL, NULL)) < 0) {
		fprintf(stderr, "no connection\n");
		exit(2);
	}
	close(fd);
	return conn;
}

int main(int argc, char **argv)
{
	struct pam_conv c = { conv, NULL };
	pam_handle_t *h = NULL;
	char line[4096], **env, *listen_on = NULL, *marker = NULL;
	FILE *cg;
	int rc, conn = -1, opt, wait = 0;

	while ((opt = getopt(argc, argv, "l:wm:")) != -1) {
		if (opt == 'l')
			listen_on = optarg;
		else if (opt == 'w')
			wait = 1;
		else if (opt == 'm')
			marker = optarg;
		else
			return 2;
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: pam_call [-l PORT] [-w] [-m MARKER] SERVICE USER\n");
		return 2;
	}
	if (listen_on) {
		conn = accept_one(listen_on);
		printf("accepted\n");
		fflush(stdout);
		if (wait && !fgets(line, sizeof(line), stdin))
			return 2;
	}
	rc = pam_start(argv[optind], argv[optind + 1], &c, &h);
	if (rc == PAM_SUCCESS)
		rc = pam_acct_mgmt(h, 0);
	printf("rc %d\n", rc);
	for (env = h ? pam_getenvlist(h) : NULL; env && *env; env++)
		printf("env %s\n", *env);
	if ((cg = fopen("/proc/self/cgroup", "r"))) {
		while (fgets(line, sizeof(line), cg))
			printf("cg %s", line);
		fclose(cg);
	}
	if (marker)
		printf("marker %s\n", access(marker, F_OK) ? "no" : "yes");
	if (h)
		pam_end(h, rc);
	if (conn >= 0)
		close(conn);
	return 0;
}
