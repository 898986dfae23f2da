#!/usr/bin/env bash
# The Docker engine and base image the container test needs, on this machine.
#
#   container_engine.sh start STATE_DIR   use a running engine, or (root, Debian) install
#                                         docker.io and start dockerd; its PID goes to
#                                         STATE_DIR/dockerd.pid. Exit 3: no engine to be had.
#   container_engine.sh stop STATE_DIR    stop the dockerd this script started, by its PID
#   container_engine.sh base IMAGE        print a base image to build on: IMAGE if present or
#                                         pullable, else a local stand-in built with debootstrap
set -euo pipefail

STANDIN=local/standin-python:3.11-bookworm   # not the official image: Debian's python3 3.11

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

start() {
  local state=$1
  mkdir -p "$state"
  if engine_up; then echo "using the running Docker engine" >&2; return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "no Docker engine: none is running, and installing one needs root on Debian" >&2
    exit 3
  fi
  if ! command -v dockerd >/dev/null; then
    echo "installing docker.io" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >&2
  fi
  # No iptables rules and no bridge: containers run with --network host; nothing else changes.
  dockerd --iptables=false --bridge=none >"$state/dockerd.log" 2>&1 &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 60); do
    engine_up && { echo "started dockerd (pid $(cat "$state/dockerd.pid"))" >&2; return 0; }
    sleep 0.5
  done
  echo "dockerd did not come up:" >&2; tail -20 "$state/dockerd.log" >&2; exit 3
}

stop() {
  local pidfile=$1/dockerd.pid
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  rm -f "$pidfile"
}

base() {
  local image=$1
  if docker image inspect "$image" >/dev/null 2>&1 || timeout 60 docker pull -q "$image" >&2; then
    echo "$image"; return 0
  fi
  if docker image inspect "$STANDIN" >/dev/null 2>&1; then echo "$STANDIN"; return 0; fi
  echo "$image cannot be pulled here: building the stand-in $STANDIN with debootstrap" >&2
  command -v debootstrap >/dev/null || {
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2; }
  local rootfs; rootfs=$(mktemp -d /tmp/modelfly-standin.XXXXXX)
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >&2
  # pip inside the build reaches PyPI the way this host does, with the host's CA bundle.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$STANDIN" >&2
  rm -rf "$rootfs"
  echo "$STANDIN"
}

case "${1:-}" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  base) base "$2" ;;
  *) echo "usage: $0 start|stop STATE_DIR, or $0 base IMAGE" >&2; exit 2 ;;
esac
