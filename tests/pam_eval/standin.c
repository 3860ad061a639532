/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Test-only PAM stand-in module (never shipped).  It makes no decisions:
 * it answers what $PAM_EVAL_DIR/answers says for (its own file name, the
 * PAM function, the user, whether an argument contains "slurm_adopt"), one
 * line per rule, first match wins, "*" matches anything:
 *     MODULE FUNCTION USER ADOPT RC SLEEP_MS TAG
 * e.g. "pam_sss account alice * 9 0 stopped".  It appends one line per call
 * to $PAM_EVAL_DIR/trace before sleeping:  MODULE FUNCTION USER RC TAG ADOPT
 * No matching line: PAM_SYSTEM_ERR, tag "nomatch". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <security/pam_modules.h>

static int field_ok(const char *want, const char *have)
{
    return strcmp(want, "*") == 0 || strcmp(want, have) == 0;
}

static int answer(pam_handle_t *pamh, const char *fn, int argc, const char **argv)
{
    Dl_info info;
    const void *item = NULL;
    const char *dir = getenv("PAM_EVAL_DIR"), *base, *user;
    char mod[256], path[4096], line[1024], m[256], f[64], u[256], a[8], tag[64] = "nomatch";
    int adopt = 0, rc = PAM_SYSTEM_ERR, ms = 0, r, s, i;
    FILE *fp;

    if (dir == NULL || !dladdr((void *)answer, &info) || info.dli_fname == NULL)
        return PAM_SYSTEM_ERR;
    base = strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1 : info.dli_fname;
    snprintf(mod, sizeof mod, "%s", base);
    if (strstr(mod, ".so"))
        *strstr(mod, ".so") = '\0';
    user = (pam_get_item(pamh, PAM_USER, &item) == PAM_SUCCESS && item) ? item : "-";
    for (i = 0; i < argc; i++)
        if (strstr(argv[i], "slurm_adopt"))
            adopt = 1;
    snprintf(path, sizeof path, "%s/answers", dir);
    if ((fp = fopen(path, "r")) != NULL) {
        while (fgets(line, sizeof line, fp))
            if (sscanf(line, "%255s %63s %255s %7s %d %d %63s", m, f, u, a, &r, &s, tag) == 7 &&
                field_ok(m, mod) && field_ok(f, fn) && field_ok(u, user) &&
                (strcmp(a, "*") == 0 || atoi(a) == adopt)) {
                rc = r;
                ms = s;
                break;
            } else
                snprintf(tag, sizeof tag, "nomatch");
        fclose(fp);
    }
    snprintf(path, sizeof path, "%s/trace", dir);
    if ((fp = fopen(path, "a")) != NULL) {
        fprintf(fp, "%s %s %s %d %s %d\n", mod, fn, user, rc, tag, adopt);
        fclose(fp);
    }
    if (ms > 0) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    return rc;
}

#define STANDIN(name, fn) \
    PAM_EXTERN int name(pam_handle_t *pamh, int flags, int argc, const char **argv) \
    { (void)flags; return answer(pamh, fn, argc, argv); }
STANDIN(pam_sm_authenticate, "auth")
STANDIN(pam_sm_setcred, "setcred")
STANDIN(pam_sm_acct_mgmt, "account")
STANDIN(pam_sm_open_session, "open_session")
STANDIN(pam_sm_close_session, "close_session")
STANDIN(pam_sm_chauthtok, "chauthtok")
