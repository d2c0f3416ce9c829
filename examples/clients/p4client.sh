#!/usr/bin/env bash
# A client of the P⁴ local API (docs/local-api.md) in shell: curl for HTTP (over the profile's
# Unix socket, or 127.0.0.1), jq for JSON. Request/response only: sending is durable, receiving
# is a long poll with confirm (the WebSocket stream is for clients that can hold a connection).
#
#   export P4_HOME=~/.p4 P4_TOKEN=p4tok_…        # the token from `p4 api token add`
#   p4client.sh whoami | peers | status
#   p4client.sh send PEER CHANNEL TEXT [KEY]       # prints the message id once it is durable
#   p4client.sh receive [WAIT_MS]                  # one line per item: ID<TAB>PEER<TAB>CHANNEL<TAB>TEXT
#   p4client.sh confirm ID...
#   p4client.sh close PEER CHANNEL
#   p4client.sh demo PEER CHANNEL                  # what the tests run
#
# The token goes in a header read from a pipe, so it is neither in the URL nor in `ps` output.
# Exit status 1 with "p4client: CODE: message" on stderr when the API refuses.
set -euo pipefail

die() { echo "p4client: $*" >&2; exit 1; }
command -v curl >/dev/null || die "needs curl"
command -v jq >/dev/null || die "needs jq"
: "${P4_HOME:?set P4_HOME to the profile directory}"
: "${P4_TOKEN:?set P4_TOKEN to the app token}"

endpoint="$P4_HOME/api/endpoint.json"
[ -r "$endpoint" ] || die "BACKEND_UNAVAILABLE: no $endpoint (is p4 up running?)"
if [ "$(jq -r .transport "$endpoint")" = unix ]; then
    target=(--unix-socket "$(jq -r .path "$endpoint")")
    base="http://localhost"
else
    target=()
    base="http://$(jq -r .host "$endpoint"):$(jq -r .port "$endpoint")"
fi

# api METHOD PATH [JSON] [EXTRA-HEADER]: prints the answer body; dies with its error code.
api() {
    local method=$1 path=$2 body=${3:-} extra=${4:-} out status
    local args=(-sS -X "$method" "${target[@]}" -w '\n%{http_code}')
    [ -n "$extra" ] && args+=(-H "$extra")
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    # (the process substitution must be on curl's own command line: it lives as long as that)
    out=$(curl "${args[@]}" -H @<(printf 'Authorization: Bearer %s\n' "$P4_TOKEN") "$base$path") ||
        die "CONNECT: cannot reach $base$path"
    status=${out##*$'\n'}
    out=${out%$'\n'*}
    if [ "$status" -ge 400 ]; then
        die "$(jq -r '"\(.error.code): \(.error.message)"' <<<"$out" 2>/dev/null || echo "HTTP $status")"
    fi
    printf '%s\n' "$out"
}

new_key() { cat /proc/sys/kernel/random/uuid 2>/dev/null || printf 'k%s%s' "$(date +%s%N)" "$RANDOM"; }

cmd_send() {  # PEER CHANNEL TEXT [KEY]
    local key=${4:-$(new_key)}
    api POST /v1/send "$(jq -nc --arg p "$1" --arg c "$2" --arg t "$3" \
        '{peer: $p, channel: $c, text: $t}')" "Idempotency-Key: $key" | jq -r .id
}

cmd_receive() {  # [WAIT_MS]
    api POST /v1/receive "$(jq -nc --argjson w "${1:-0}" '{wait_ms: $w, max: 64}')" |
        jq -r '.messages[] | [.id, .peer_name, .channel,
                              (if .type == "closed" then "<closed>" else (.data | @base64d) end)]
                           | @tsv'
}

cmd_confirm() {  # ID...
    api POST /v1/confirm "$(jq -nc '{ids: $ARGS.positional}' --args "$@")" | jq -c .
}

cmd_demo() {  # PEER CHANNEL: send (and retry with the same key), receive the echo, confirm
    local key id id2 line out
    out=$(api GET /v1/whoami); echo "app: $(jq -r .app <<<"$out")"
    out=$(api GET /v1/peers); echo "peers: $(jq -r '[.peers[].name] | join(",")' <<<"$out")"
    out=$(api GET /v1/status)
    echo "status: $(jq -r '.peers[] | "\(.name) \(.state) gen \(.generation)"' <<<"$out")"
    key=$(new_key)
    id=$(cmd_send "$1" "$2" "hello from shell" "$key")
    id2=$(cmd_send "$1" "$2" "hello from shell" "$key")
    [ "$id" = "$id2" ] && echo "sent: $id (retry with the same key: same id)"
    line=$(cmd_receive 5000 | head -n 1)
    [ -n "$line" ] || die "nothing received"
    echo "received: $(cut -f 4 <<<"$line") on $(cut -f 3 <<<"$line") from $(cut -f 2 <<<"$line")"
    echo "confirm: $(cmd_confirm "$(cut -f 1 <<<"$line")")"
}

case "${1:-}" in
    whoami) api GET /v1/whoami | jq . ;;
    peers) api GET /v1/peers | jq -r '.peers[] | "\(.name)\t\(.device_id)"' ;;
    status) api GET /v1/status | jq . ;;
    send) [ $# -ge 4 ] || die "usage: send PEER CHANNEL TEXT [KEY]"; shift; cmd_send "$@" ;;
    receive) shift; cmd_receive "$@" ;;
    confirm) [ $# -ge 2 ] || die "usage: confirm ID..."; shift; cmd_confirm "$@" ;;
    close) [ $# -eq 3 ] || die "usage: close PEER CHANNEL"
           api POST /v1/close "$(jq -nc --arg p "$2" --arg c "$3" '{peer: $p, channel: $c}')" | jq -c . ;;
    demo) [ $# -eq 3 ] || die "usage: demo PEER CHANNEL"; shift; cmd_demo "$@" ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
