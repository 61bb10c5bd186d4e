#!/usr/bin/env bash
# Emulated cluster network: run a command as Open MPI ranks, each rank on a
# "node" of its own - a Linux network namespace - joined by a shaped network.
#
#   tests/netns/cluster.sh [-n RANKS] [--rate RATE] [--delay DELAY] -- COMMAND [ARGS...]
#   tests/netns/cluster.sh -n 2 --rate 200mbit --delay 1ms -- build/release/cllm train --out runs/net
#   tests/netns/cluster.sh -n 2 --rate 200mbit --delay 1ms -- /usr/bin/python3 tests/netns/netprobe.py
#
# Defaults: 2 ranks, no rate limit, no delay. RATE is tc's (1gbit, 200mbit,
# 500kbit); DELAY the one-way latency (1ms, 250us): both apply to everything
# a rank sends, so a round trip takes 2 x DELAY and each direction of a
# transfer gets RATE. Needs root (or CAP_NET_ADMIN), iproute2 and, for
# --delay on a kernel without sch_netem, iptables and /usr/bin/python3
# (scripts/setup.sh test installs them); where `ip netns add` is refused it
# prints one line and exits 77 (a skipped test).
#
# The network: namespaces PREFIX-r0 ... PREFIX-r<RANKS-1> (PREFIX is
# cllm-<pid>-<random>, so concurrent runs never share a name), each with
# loopback and one veth, "veth0", 10.213.0.<i+1>/24 and no other route; the
# veths' other ends are ports of one Linux bridge in a further namespace,
# PREFIX-br. Nothing is created in, or changed in, the root namespace.
# Shaping is on each rank's veth egress: tc netem (delay and rate) where the
# kernel has it, else tc tbf for the rate and tests/netns/nfqueue_delay.py
# for the delay (CLLM_NETNS_SHAPER=netem or tbf forces one).
#
# The launch: as on a real cluster, one Open MPI daemon per node. mpirun runs
# in rank 0's namespace, with a hostfile of the ranks' addresses, and starts
# an orted in every other namespace through a private "rsh" agent that runs
# `ip netns exec NS sh -c CMD` where ssh would log in. Ranks then reach their
# own daemon's PMIx server on their namespace's loopback, and each other only
# over the veths: pml ob1 with btl tcp,self, so neither shared memory
# (vader, which namespaces would not stop) nor UCX is used. Starting ranks
# through `ip netns exec` under a root-namespace mpirun does not work: a
# rank's PMIx client cannot reach mpirun's PMIx server on the root
# namespace's loopback, and MPI_Init fails ("OPAL ERROR: Unreachable").
#
# Prints one line describing the network before the command and one line of
# traffic per rank after it. Every namespace (and so every veth, the bridge
# and the iptables rules inside them) is removed on exit, also when the
# command fails or the script is interrupted; the exit status is the
# command's (mpirun's), or 128 + the signal that stopped the script.
# MPIRUN_ARGS adds mpirun options; OMP_* and OPENBLAS_* variables are passed
# to the ranks with -x.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
me=cluster.sh
usage() { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; }  # the comment block above
die() { echo "$me: $*" >&2; exit 2; }

ranks=2 rate='' delay=''
while (( $# > 0 )); do
  case $1 in
    -n) (( $# >= 2 )) || die "-n needs a value"; ranks=$2; shift 2 ;;
    --rate) (( $# >= 2 )) || die "--rate needs a value"; rate=$2; shift 2 ;;
    --delay) (( $# >= 2 )) || die "--delay needs a value"; delay=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) usage >&2; exit 2 ;;
  esac
done
(( $# > 0 )) || { usage >&2; exit 2; }
# Up to 200 ranks: addresses .1 to .200 of one /24.
if ! [[ $ranks =~ ^[1-9][0-9]*$ ]] || (( ranks > 200 )); then die "-n must be 1 to 200"; fi
[[ -z $rate || ${rate,,} =~ ^[0-9]+(\.[0-9]+)?([kmgt]?(bit|bps))$ ]] \
  || die "--rate '$rate': expected a number and a unit such as 200mbit or 1gbit"
[[ -z $delay || ${delay,,} =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]] \
  || die "--delay '$delay': expected a number and us, ms or s, such as 1ms"
rate=${rate,,} delay=${delay,,}
for tool in ip tc mpirun; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh test installs it)"
done

subnet=10.213.0.0/24
addr() { echo "10.213.0.$(( $1 + 1 ))"; }
prefix=cllm-$$-$RANDOM
bridge_ns=$prefix-br
rank_ns() { echo "$prefix-r$1"; }

# ---------------------------------------------------------------- teardown
# Registered before anything is created. Namespaces are deleted only once no
# process is left in them: a daemon still inside (an orted after an aborted
# job) would keep a deleted namespace, and its veths, alive.
created=()            # namespaces made, in order
tmp=
mpirun_pid=
delay_pid=
cleaned=0
# shellcheck disable=SC2317  # run by the traps
cleanup() {
  (( cleaned )) && return 0
  cleaned=1
  set +e
  if [[ -n $mpirun_pid ]] && kill -0 "$mpirun_pid" 2>/dev/null; then
    # mpirun ends its ranks and daemons on SIGTERM (SIGKILL a second later).
    kill -TERM "$mpirun_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$mpirun_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$mpirun_pid" 2>/dev/null
    wait "$mpirun_pid" 2>/dev/null
  fi
  if [[ -n $delay_pid ]]; then
    kill -TERM "$delay_pid" 2>/dev/null
    wait "$delay_pid" 2>/dev/null
  fi
  local ns pids
  for ns in "${created[@]}"; do
    for sig in TERM KILL; do
      pids=$(ip netns pids "$ns" 2>/dev/null)
      [[ -z $pids ]] && break
      # shellcheck disable=SC2086  # a list of pids
      kill -"$sig" $pids 2>/dev/null
      sleep 0.5
    done
    ip netns del "$ns" 2>/dev/null || echo "$me: could not delete network namespace $ns" >&2
  done
  [[ -n $tmp ]] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------- network
if ! err=$(ip netns add "$bridge_ns" 2>&1); then
  echo "$me: cannot create network namespaces (ip netns add: ${err:-failed}); needs root: skipped" >&2
  exit 77
fi
created+=("$bridge_ns")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cllm-netns.XXXXXX")

ip -n "$bridge_ns" link set lo up
ip -n "$bridge_ns" link add br0 type bridge
ip -n "$bridge_ns" link set br0 up
for (( i = 0; i < ranks; i++ )); do
  ns=$(rank_ns "$i")
  ip netns add "$ns"
  created+=("$ns")
  # Both ends are created directly in their namespaces: no interface ever
  # appears in the root namespace.
  ip link add veth0 netns "$ns" type veth peer name "r$i" netns "$bridge_ns"
  ip -n "$bridge_ns" link set "r$i" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(addr "$i")/24" dev veth0
  ip -n "$ns" link set veth0 up
done

# ---------------------------------------------------------------- shaping
to_us() {  # 1ms -> 1000, 250us -> 250, 0.5s -> 500000
  awk -v d="$1" 'BEGIN { n = d + 0; u = substr(d, length(n "") + 1);
    m = (u == "s") ? 1e6 : (u == "ms") ? 1e3 : 1; printf "%d", n * m + 0.5 }'
}
to_bits() {  # 200mbit -> 200000000 (tc: k = 1000; bps = bytes per second)
  awk -v r="$1" 'BEGIN { n = r + 0; u = substr(r, length(n "") + 1);
    p = substr(u, 1, 1); m = (p == "k") ? 1e3 : (p == "m") ? 1e6 : (p == "g") ? 1e9 : (p == "t") ? 1e12 : 1;
    if (u ~ /bps$/) m *= 8; printf "%d", n * m }'
}
shaper=none
if [[ -n $rate || -n $delay ]]; then
  shaper=${CLLM_NETNS_SHAPER:-auto}
  netem=(netem limit 100000)
  [[ -n $delay ]] && netem+=(delay "$delay")
  [[ -n $rate ]] && netem+=(rate "$rate")
  if [[ $shaper == auto || $shaper == netem ]]; then
    if tc -n "$(rank_ns 0)" qdisc add dev veth0 root "${netem[@]}" 2>"$tmp/netem.err"; then
      shaper=netem
    elif [[ $shaper == netem ]]; then
      die "CLLM_NETNS_SHAPER=netem but tc netem failed: $(head -n1 "$tmp/netem.err")"
    else
      shaper=tbf
    fi
  fi
  [[ $shaper == netem || $shaper == tbf ]] || die "CLLM_NETNS_SHAPER must be netem or tbf, not '$shaper'"
fi
case $shaper in
  netem)
    for (( i = 1; i < ranks; i++ )); do
      tc -n "$(rank_ns "$i")" qdisc add dev veth0 root "${netem[@]}"
    done
    how="tc netem"
    ;;
  tbf)
    how=
    if [[ -n $rate ]]; then
      # The bucket holds at least 128 KiB or 1 ms at the rate; the queue
      # holds 100 ms of traffic. tbf cuts a packet larger than the bucket
      # into MSS segments, and a 64 KiB TCP send counts its segments'
      # headers too (about 67 KiB): with a 64 KiB bucket every send was cut
      # up, and the kernel's work rose 3.7x (400mbit, medium preset).
      bits=$(to_bits "$rate")
      (( bits >= 8000 )) || die "--rate $rate is below 1kbps"
      burst=$(( bits / 8 / 1000 > 131072 ? bits / 8 / 1000 : 131072 ))
      for (( i = 0; i < ranks; i++ )); do
        tc -n "$(rank_ns "$i")" qdisc add dev veth0 root tbf rate "$rate" burst "$burst" latency 100ms
      done
      how="tc tbf"
    fi
    if [[ -n $delay ]]; then
      command -v iptables-legacy >/dev/null \
        || { echo "$me: --delay needs tc netem, which this kernel lacks, or iptables-legacy (scripts/setup.sh test installs iptables): skipped" >&2; exit 77; }
      [[ -x /usr/bin/python3 ]] || { echo "$me: --delay needs /usr/bin/python3: skipped" >&2; exit 77; }
      names=()
      for (( i = 0; i < ranks; i++ )); do names+=("$(rank_ns "$i")"); done
      # Raised priority: the ranks keep every core busy, and each wake-up
      # this daemon waits for adds to the delay.
      nice -n -10 /usr/bin/python3 "$here/nfqueue_delay.py" --delay-us "$(to_us "$delay")" \
        --ready "$tmp/delay.ready" "${names[@]}" &
      delay_pid=$!
      for _ in $(seq 100); do
        [[ -s $tmp/delay.ready ]] && break
        kill -0 "$delay_pid" 2>/dev/null || die "nfqueue_delay.py failed to start"
        sleep 0.05
      done
      [[ -s $tmp/delay.ready ]] || die "nfqueue_delay.py did not bind its queues within 5 s"
      # Only now the rules: a packet queued with nobody listening is dropped.
      for (( i = 0; i < ranks; i++ )); do
        ip netns exec "$(rank_ns "$i")" iptables-legacy -w -A OUTPUT -o veth0 -j NFQUEUE --queue-num 0
      done
      how="${how:+$how + }NFQUEUE delay (nfqueue_delay.py)"
    fi
    if [[ ${CLLM_NETNS_SHAPER:-auto} == auto ]]; then how+="; this kernel has no netem"; fi
    ;;
esac

# ---------------------------------------------------------------- checks
# Each rank namespace must hold exactly lo and veth0, with no route but the
# emulated subnet's: then the only way out of a rank is its shaped veth.
for (( i = 0; i < ranks; i++ )); do
  ns=$(rank_ns "$i")
  links=$(ip -n "$ns" -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort | tr '\n' ' ')
  [[ $links == "lo veth0 " ]] || die "namespace $ns has links '$links', expected lo and veth0"
  routes=$(ip -n "$ns" route show | tr '\n' ';')
  [[ $routes == "$subnet dev veth0 proto kernel scope link src $(addr "$i") ;" ]] \
    || die "namespace $ns has routes '$routes', expected only $subnet on veth0"
done

echo "$me: $ranks ranks, one network namespace each ($(addr 0)-$(addr $((ranks - 1))) on one bridge);" \
     "per rank and direction: rate ${rate:-unlimited}, delay ${delay:-none}${how:+ ($how)};" \
     "MPI over TCP only (pml ob1, btl tcp,self)" >&2

# ---------------------------------------------------------------- launch
# The rsh agent: Open MPI calls it as `AGENT HOST COMMAND...`, as it would
# ssh, for every host but its own; the command is a shell command line.
agent=$tmp/netns-rsh
# shellcheck disable=SC2016  # $1, $host, $ns and $* are the agent's own
{
  echo '#!/bin/sh'
  echo 'host=$1; shift'
  echo 'case $host in'
  for (( i = 0; i < ranks; i++ )); do echo "  $(addr "$i")) ns=$(rank_ns "$i") ;;"; done
  echo '  *) echo "netns-rsh: unknown host $host" >&2; exit 255 ;;'
  echo 'esac'
  echo 'exec env OMPI_MCA_orte_tmpdir_base="'"$tmp"'/$host" ip netns exec "$ns" /bin/sh -c "$*"'
} >"$agent"
chmod +x "$agent"
for (( i = 0; i < ranks; i++ )); do echo "$(addr "$i") slots=1"; done >"$tmp/hostfile"
for (( i = 1; i < ranks; i++ )); do mkdir "$tmp/$(addr "$i")"; done

# The "nodes" share one host - its name, /tmp and address space layout - so
# each daemon gets a session folder of its own, $tmp/ADDRESS (else they race
# mpirun and each other to create /tmp/ompi.HOST.UID/jf.N/0, and one fails;
# mpirun keeps Open MPI's default), does not map hwloc's topology
# into a shared "biggest hole" (orted 4.1.4 segfaults there at times), and
# stays attached: a daemon that dies ends mpirun with its error, where a
# daemonized one would leave mpirun waiting for it forever.
# shellcheck disable=SC2054  # tcp,self is one value
args=(-np "$ranks" --hostfile "$tmp/hostfile" --map-by node --oversubscribe --bind-to none
      --leave-session-attached --mca rtc_hwloc_vmhole none
      --mca plm rsh --mca plm_rsh_agent "$agent" --mca plm_rsh_no_tree_spawn 1
      --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include "$subnet"
      --mca oob_tcp_if_include "$subnet")
(( EUID == 0 )) && args+=(--allow-run-as-root)
while read -r var; do
  if [[ $var == OMP_* || $var == OPENBLAS_* ]]; then args+=(-x "$var"); fi
done < <(compgen -e)
# shellcheck disable=SC2206
extra=(${MPIRUN_ARGS:-})

# In the background, so that a signal to this script runs its trap at once
# (bash runs traps only between commands, and `wait` is interruptible); an
# asynchronous command ignores SIGINT, so Ctrl-C reaches only this script,
# whose trap ends mpirun and removes the network.
ip netns exec "$(rank_ns 0)" mpirun "${args[@]}" "${extra[@]}" "$@" &
mpirun_pid=$!
status=0
wait "$mpirun_pid" || status=$?
mpirun_pid=
if [[ -n $delay_pid ]] && ! kill -0 "$delay_pid" 2>/dev/null; then
  echo "$me: nfqueue_delay.py ended during the run: packets were held, not delayed" >&2
  (( status != 0 )) || status=1
fi

# What crossed the emulated network: a check that the ranks' traffic did.
for (( i = 0; i < ranks; i++ )); do
  stats=$(ip netns exec "$(rank_ns "$i")" cat /sys/class/net/veth0/statistics/tx_bytes \
            /sys/class/net/veth0/statistics/rx_bytes | tr '\n' ' ')
  read -r tx rx <<<"$stats"
  echo "$me: rank $i ($(addr "$i")) sent $tx bytes and received $rx bytes on veth0" >&2
done
exit "$status"
