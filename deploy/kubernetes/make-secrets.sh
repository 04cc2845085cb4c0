#!/usr/bin/env bash
# Makes the Secrets the control plane needs, with fresh random values, and applies them (or prints them with
# --dry-run). Nothing secret is committed to the repository, and nothing secret passes on a command line.
#
#   openrr-secrets    database-url, secrets-key (the Fernet key all replicas share for linked-storage credentials)
#   openrr-ca         cert.pem, ca-key.pem: the local CA all replicas share; it signs each render pod's leaf, and
#                     clients trust its cert.pem (also written to --out)
#   openrr-postgres   password (only without --database-url, for postgres.yaml)
#
# The CA's name constraints permit only the names and networks given here (plus localhost and loopback): list the
# networks of your pods and of your nodes' addresses (render pods' certificates name the node), and every DNS name
# clients use (--dns; the Service's names are added). A replica whose address lies outside stops at start.
#
# Needs openssl, python3 (stdlib only) and kubectl. Example:
#   deploy/kubernetes/make-secrets.sh --network 10.0.0.0/8 --dns openrr.example.com --dns render.example.com
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    cat <<'USAGE'
Options:
  --namespace NS       namespace of the control plane (default openrr)
  --network CIDR       a network the CA may vouch for (repeatable; at least one: pods and nodes)
  --dns NAME           a DNS name the CA may vouch for, its subdomains included (repeatable)
  --database-url URL   an external PostgreSQL (SQLAlchemy URL, postgresql+psycopg://user:password@host/db);
                       default: the in-cluster one of postgres.yaml, with a random password
  --out DIR            where to write the CA's certificate, for clients to trust (default ./openrr-ca)
  --dry-run            print the Secrets as YAML instead of applying them
USAGE
}

namespace=openrr
networks=()
names=()
database_url=""
out=./openrr-ca
dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --namespace) namespace="$2"; shift 2 ;;
        --network) networks+=("$2"); shift 2 ;;
        --dns) names+=("$2"); shift 2 ;;
        --database-url) database_url="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "make-secrets.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
if [ ${#networks[@]} -eq 0 ]; then
    echo "make-secrets.sh: give --network CIDR for your pod and node networks (--help)" >&2
    exit 2
fi
for tool in openssl python3 kubectl; do
    command -v "$tool" >/dev/null || { echo "make-secrets.sh: $tool is needed" >&2; exit 2; }
done

umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

random_token() {  # URL-safe base64 of $1 random bytes
    head -c "$1" /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n'
}

# --- the shared local CA (as openrr.tls makes it: P-256, CA:TRUE pathlen 0, critical name constraints) -----------
constraints="permitted;DNS:localhost,permitted;IP:127.0.0.0/255.0.0.0"
constraints+=",permitted;IP:0:0:0:0:0:0:0:1/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF"
for name in "openrr.$namespace.svc" "openrr.$namespace.svc.cluster.local" "${names[@]}"; do
    constraints+=",permitted;DNS:$name"
done
for network in "${networks[@]}"; do
    # openssl writes an IP constraint as address/netmask.
    masked="$(python3 -c 'import ipaddress, sys
n = ipaddress.ip_network(sys.argv[1], strict=False)
print(f"{n.network_address.exploded}/{n.netmask.exploded}".upper())' "$network")" \
        || { echo "make-secrets.sh: --network $network is not a CIDR" >&2; exit 2; }
    constraints+=",permitted;IP:$masked"
done
cat >"$work/ca.cnf" <<CNF
[req]
distinguished_name = dn
x509_extensions = ca
prompt = no
[dn]
CN = openrr local CA
[ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
nameConstraints = critical,$constraints
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF
mkdir -p "$work/ca"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca/ca-key.pem" 2>/dev/null
openssl req -x509 -new -config "$work/ca.cnf" -key "$work/ca/ca-key.pem" -days 3650 -sha256 \
    -out "$work/ca/cert.pem"

# --- the database URL and the shared storage-secret key ----------------------------------------------------------
mkdir -p "$work/app" "$work/pg"
if [ -z "$database_url" ]; then
    password="$(random_token 24 | tr -d '=')"
    printf '%s' "$password" >"$work/pg/password"
    database_url="postgresql+psycopg://openrr:$password@openrr-postgres.$namespace.svc:5432/openrr"
fi
printf '%s' "$database_url" >"$work/app/database-url"
random_token 32 >"$work/app/secrets-key"  # a Fernet key: URL-safe base64 of 32 random bytes

secret() {  # name, then kubectl --from-file arguments
    local name="$1"
    shift
    echo "---"
    kubectl create secret generic "$name" --namespace "$namespace" --dry-run=client -o yaml "$@"
}
{
    secret openrr-secrets --from-file="$work/app/database-url" --from-file="$work/app/secrets-key"
    secret openrr-ca --from-file="$work/ca/cert.pem" --from-file="$work/ca/ca-key.pem"
    if [ -f "$work/pg/password" ]; then
        secret openrr-postgres --from-file="$work/pg/password"
    fi
} >"$work/secrets.yaml"

mkdir -p "$out"
cp "$work/ca/cert.pem" "$out/cert.pem"
chmod 0644 "$out/cert.pem"
if [ "$dry_run" = 1 ]; then
    cat "$work/secrets.yaml"
else
    kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"
    kubectl apply -f "$work/secrets.yaml"
fi
echo "make-secrets.sh: clients trust $out/cert.pem (REQUESTS_CA_BUNDLE, --ca-cert)" >&2
