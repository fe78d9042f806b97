#!/usr/bin/env bash
# Make sure Graphviz's `dot` is on PATH: the model-graph figures are rendered with it.
set -u
command -v dot >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Graphviz's dot is missing: installing Debian's graphviz package" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz; } >/dev/null 2>&1
  command -v dot >/dev/null 2>&1 && exit 0
fi
echo "error: Graphviz's 'dot' is missing and could not be installed here; install it (apt-get install graphviz, brew install graphviz, or conda install graphviz) and run make again" >&2
exit 1
