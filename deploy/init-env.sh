#!/usr/bin/env sh
# Writes deploy/.env from deploy/.env.example with a fresh random value for every empty one.
# Never overwrites an existing .env (your secrets stay yours). Needs only sh, sed and openssl.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=${1:-"$here/.env"}
if [ -e "$target" ]; then
  echo "$target exists: left as it is" >&2
  exit 1
fi
umask 077
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    AIRFLOW_FERNET_KEY=) echo "AIRFLOW_FERNET_KEY=$(openssl rand -base64 32 | tr '+/' '-_')" ;;
    [A-Z]*=) echo "${line}$(openssl rand -hex 24)" ;;
    *) echo "$line" ;;
  esac
done <"$here/.env.example" >"$target"
echo "wrote $target"
