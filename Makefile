# Two entry points for a fresh Debian 12 machine, run as root:
#   make demo   - bring up the virtual cluster and show haoscar at work
#   make test   - lint, type-check and run every test (unit, lab, VM)
# Both install what they need first and are idempotent.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMPS := .make

# Debian packages: the real parts haoscar drives (see README, "Why each dependency").
APT_PACKAGES := iproute2 nftables dnsmasq-base rsync iputils-ping arping busybox-static \
	openssh-server openssh-client keepalived qemu-system-x86 ipxe debootstrap \
	procps psmisc acl attr util-linux cpio xz-utils kmod python3-venv \
	extlinux syslinux-common syslinux-efi fdisk e2fsprogs ovmf openssl \
	fence-agents openipmi ipmitool slurmctld slurmd slurm-client munge nfs-ganesha nfs-ganesha-vfs libnfs-utils \
	openmpi-bin libopenmpi-dev libnfs13 libfuse2 chrony chromium

# The browser tests drive Debian's chromium (APT_PACKAGES); Playwright never downloads a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: all deps apt venv demo test lint typecheck unit lab browser clean

all: test

deps: apt venv

apt: $(STAMPS)/apt
$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

demo: deps
	$(BIN)/haoscar demo

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports
	$(BIN)/python tools/check_sizes.py src

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q tests/unit

lab: deps
	$(BIN)/pytest -q tests/lab

browser: deps
	$(BIN)/pytest -q tests/browser

test: deps lint typecheck
	$(BIN)/pytest -q --durations=30 tests

clean:
	rm -rf $(VENV) $(STAMPS) .mypy_cache .ruff_cache .pytest_cache
