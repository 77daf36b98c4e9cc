#!/usr/bin/env sh
# Writes deploy/.env from deploy/.env.example with a fresh random value for every empty one, and a
# self-signed TLS certificate for the inference load balancer (deploy/tls/cert.pem + key.pem) unless
# one is there (put your own pair there, or point TLS_DIR in .env at it).
# Never overwrites an existing .env or certificate (your secrets stay yours). Needs only sh, sed and
# openssl. Usage: init-env.sh [ENV_FILE [TLS_DIR]]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=${1:-"$here/.env"}
tls_dir=${2:-"$here/tls"}
umask 077
if [ ! -e "$tls_dir/cert.pem" ]; then
  mkdir -p "$tls_dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,DNS:lb,IP:127.0.0.1" \
    -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" 2>/dev/null
  # the load balancer runs as a non-root user: it must be able to read the pair
  chmod 644 "$tls_dir/cert.pem" "$tls_dir/key.pem"
  echo "wrote a self-signed certificate to $tls_dir"
fi
if [ -e "$target" ]; then
  echo "$target exists: left as it is" >&2
  exit 1
fi
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    AIRFLOW_FERNET_KEY=) echo "AIRFLOW_FERNET_KEY=$(openssl rand -base64 32 | tr '+/' '-_')" ;;
    [A-Z]*=) echo "${line}$(openssl rand -hex 24)" ;;
    *) echo "$line" ;;
  esac
done <"$here/.env.example" >"$target"
echo "wrote $target"
