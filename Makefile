# hpc.slurm_adopt - entry points. Everything runs as root on a Debian 12 machine
# (the lab is real Slurm, munge, sshd and PAM on this machine; nothing else is touched:
# the lab's PAM services, users and Slurm config have their own lab* names and paths).

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: demo test venv lab lab-host lab-trixie lab-down unit node checks bench

## demo: bring up the one-node lab and show adoption and denial over real ssh logins
demo: lab-host
	/usr/bin/python3 lab/demo.py

## test: the whole test suite (unit, real-Slurm node tests on 22.05 and 24.11, collection checks)
test: venv lab
	ADOPT_LAB_REQUIRED=1 $(PY) -m pytest tests/unit tests/node
	scripts/check-collection.sh

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
	-bash lab/trixie/down.sh
	-bash lab/host/down.sh

unit: venv
	$(PY) -m pytest tests/unit

node: venv lab
	ADOPT_LAB_REQUIRED=1 $(PY) -m pytest tests/node

checks: venv
	scripts/check-collection.sh

## bench: median ssh login time without/with the C module and with ours, and their ratio
bench: lab-host
	/usr/bin/python3 benchmarks/login_latency.py
