# SPDX-License-Identifier: GPL-3.0-or-later
# hpc.slurm_adopt - entry points. Everything runs as root on a Debian 12 machine
# (the lab is real Slurm, munge, sshd and PAM on this machine; nothing else is touched:
# the lab's PAM services, users and Slurm config have their own lab* names and paths).

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: demo demo-node test venv lab lab-host lab-trixie lab-sid lab-down images unit corpus node checks molecule fleet scale scale-pull bench mutation mutation-recheck

## demo: the main job on a lab on this machine: a 4-node podman cluster (controller, two
## compute nodes, a login node; real munge + Slurm), the rollout (playbooks/site.yml), the
## health check (playbooks/healthcheck.yml), logins that show adoption and denial, a summary
demo: venv images
	bash lab/fleet/demo.sh

## demo-node: the one-node lab: adoption and denial over real ssh logins, C module side by side
demo-node: lab-host
	/usr/bin/python3 lab/demo.py

## test: the whole test suite (what CI runs: .ci/run): unit, corpus (real-world PAM trees through
## the real libpam), node (real Slurm 22.05, 24.11 and 26.05, C module as oracle), collection
## checks, molecule scenarios, the fleet lab
test: venv lab images
	scripts/test-all.sh

venv:
	scripts/venv.sh >/dev/null

lab: lab-host lab-trixie lab-sid

lab-host:
	bash lab/host/install.sh
	bash lab/host/up.sh

lab-trixie:
	bash lab/trixie/build.sh
	bash lab/trixie/up.sh

lab-sid:
	bash lab/sid/build.sh
	bash lab/sid/up.sh

lab-down:
	-bash lab/fleet/down.sh
	-bash lab/sid/down.sh
	-bash lab/trixie/down.sh
	-bash lab/host/down.sh

images:
	bash lab/images/build.sh >/dev/null

unit: venv
	$(PY) -m pytest tests/unit

## corpus: the PAM corpus (tests/corpus) through the editor and the real libpam; builds the
## cached generator chroots on first use (lab/pamcorpus/build.sh, network to the Debian mirror)
corpus: venv
	$(PY) -m pytest tests/corpus

node: venv lab
	ADOPT_LAB_REQUIRED=1 $(PY) -m pytest tests/node

## mutation: mutmut over the node-side package (roles/adopt_module/files/slurm_adopt) against
## its unit tests, in a scratch copy under build/mutation; prints the score and the survivors.
## MUTATE=... narrows it (default: the decision flow, the stepd and callerid clients, the
## options; MUTATE=all for every module)
## (not part of `make test`: more than an hour on 2 CPUs). Tests that start the system
## python3 or python3 -S cannot import mutmut's trampolines and are left out of it; mutmut
## also cannot see what a test runs in a child process (it maps tests to functions in the
## pytest process), so a behaviour is pinned in the test process where it can be.
## Reviewed equivalent mutants (no test can tell them apart) are listed with their reasons
## in tests/unit/mutation_equivalent.txt and counted out of the score (both scores print).
## mutation-recheck: after a change, keeps the last run (build/mutation.base) and runs only
## the mutants of changed functions and the ones that run did not kill; the score merges both.
MUTATION_DIR := build/mutation
MUTATE ?= flow.py stepd.py callerid.py options.py
MUTATION_TESTS := test_flow.py test_flow_log.py test_stepd.py test_stepd_protocol.py test_callerid.py \
	test_callerid_replies.py test_options.py test_slurmconf.py test_entry.py test_munge.py test_log.py \
	test_counters.py test_flow_paths.py
MUTATION_SCORE = ../../$(PY) ../../tests/unit/mutation_score.py results.txt \
	--equivalent ../../tests/unit/mutation_equivalent.txt
define mutation_setup
	rm -rf $(MUTATION_DIR) && mkdir -p $(MUTATION_DIR)/src $(MUTATION_DIR)/tests/unit
	cp -r roles/adopt_module/files/slurm_adopt roles/adopt_module/files/pam_slurm_adopt.py $(MUTATION_DIR)/src/
	find $(MUTATION_DIR)/src -name __pycache__ -prune -exec rm -rf {} +
	cp -r tests/fakes $(MUTATION_DIR)/tests/
	cp tests/unit/conftest.py $(addprefix tests/unit/,$(MUTATION_TESTS)) $(MUTATION_DIR)/tests/unit/
	printf '[pytest]\n# stops pytest from using the checkout'"'"'s pytest.ini (its pythonpath\n# would import the unmutated package)\n' > $(MUTATION_DIR)/pytest.ini
	{ echo '[mutmut]'; echo 'source_paths=src/slurm_adopt'; \
	  if [ "$(MUTATE)" != all ]; then echo 'only_mutate='; \
	    for m in $(MUTATE); do echo "    src/slurm_adopt/$$m"; done; fi; \
	  echo 'also_copy='; \
	  echo '    src/pam_slurm_adopt.py'; echo '    pytest.ini'; \
	  echo 'pytest_add_cli_args_test_selection='; \
	  for t in $(MUTATION_TESTS); do echo "    tests/unit/$$t"; done; \
	  echo 'pytest_add_cli_args='; echo '    -p'; echo '    no:cacheprovider'; \
	  echo '    --deselect=tests/unit/test_munge.py::test_real_munged_sees_the_calling_user'; \
	} > $(MUTATION_DIR)/setup.cfg
endef
mutation: venv
	$(mutation_setup)
	cd $(MUTATION_DIR) && ../../$(VENV)/bin/mutmut run --max-children 2 >mutmut-run.log 2>&1; \
	  ../../$(VENV)/bin/mutmut results --all true > results.txt 2>&1; \
	  $(MUTATION_SCORE)

mutation-recheck: venv
	test -f $(MUTATION_DIR)/results.txt || { echo "run make mutation first"; exit 1; }
	rm -rf $(MUTATION_DIR).base && mv $(MUTATION_DIR) $(MUTATION_DIR).base
	$(mutation_setup)
	cd $(MUTATION_DIR) && ../../$(PY) ../../tests/unit/mutation_recheck.py ../mutation.base . \
	    ../../tests/unit/mutation_equivalent.txt > recheck.txt \
	  && ../../$(VENV)/bin/mutmut run --max-children 2 $$(cat recheck.txt) >mutmut-run.log 2>&1; \
	  ../../$(VENV)/bin/mutmut results --all true > results.txt 2>&1; \
	  $(MUTATION_SCORE) --base ../mutation.base

checks: venv
	scripts/check-collection.sh

molecule: venv images
	scripts/molecule.sh

fleet: venv images
	bash lab/fleet/test.sh

## scale: the fleet lab with 2, 4, 8 and 16 compute nodes: site.yml (first run, then a second
## run that must change nothing) and healthcheck.yml, timed per batch, per node and per task
## (lab/fleet/scale.sh; docs/fleet.md, "Scale"); writes benchmarks/fleet_scale.json and .md.
## Not part of `make test` (9 minutes for N = 2, 50 for N = 16 on 2 busy CPUs). SCALE_SIZES="16" for one size.
scale: venv images
	bash lab/fleet/scale.sh

## scale-pull: ansible-pull, tested once: a compute node of the scale lab configures itself
## at boot from a bare git repository of a site's configuration, bind-mounted (no network),
## and ends adopted-ready: drift check green, real logins denied/admitted/adopted; rebooted,
## its second pull changes nothing (lab/fleet/scale-pull.sh; docs/fleet.md, "ansible-pull").
## Not part of `make test` (an image build with ansible-core's wheels from this machine's pip,
## one node, two boots: about 2 minutes).
scale-pull: venv images
	bash lab/fleet/scale-pull.sh

## bench: median ssh login time without/with the C module and with ours, and their ratio
bench: lab-host
	/usr/bin/python3 benchmarks/login_latency.py
