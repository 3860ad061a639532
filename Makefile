# hpc.slurm_adopt - entry points. Everything runs as root on a Debian 12 machine
# (the lab is real Slurm, munge, sshd and PAM on this machine; nothing else is touched:
# the lab's PAM services, users and Slurm config have their own lab* names and paths).

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: demo demo-node test venv lab lab-host lab-trixie lab-down images unit corpus node checks molecule fleet bench

## demo: the main job on a lab on this machine: a 4-node podman cluster (controller, two
## compute nodes, a login node; real munge + Slurm), the rollout (playbooks/site.yml), the
## health check (playbooks/healthcheck.yml), logins that show adoption and denial, a summary
demo: venv images
	bash lab/fleet/demo.sh

## demo-node: the one-node lab: adoption and denial over real ssh logins, C module side by side
demo-node: lab-host
	/usr/bin/python3 lab/demo.py

## test: the whole test suite (what CI runs: .ci/run): unit, node (real Slurm 22.05 and 24.11,
## C module as oracle), collection checks, molecule scenarios, the fleet lab
test: venv lab images
	scripts/test-all.sh

venv:
	scripts/venv.sh >/dev/null

lab: lab-host lab-trixie

lab-host:
	bash lab/host/install.sh
	bash lab/host/up.sh

lab-trixie:
	bash lab/trixie/build.sh
	bash lab/trixie/up.sh

lab-down:
	-bash lab/fleet/down.sh
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

checks: venv
	scripts/check-collection.sh

molecule: venv images
	scripts/molecule.sh

fleet: venv images
	bash lab/fleet/test.sh

## bench: median ssh login time without/with the C module and with ours, and their ratio
bench: lab-host
	/usr/bin/python3 benchmarks/login_latency.py
