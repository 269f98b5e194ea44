#!/usr/bin/env bash
# Create orderflow's secrets in Secrets Manager from values you paste (never echoed, never on a
# command line), then print the parameter overrides for `sam deploy`: each secret's full ARN, with
# the random suffix Secrets Manager adds (the template refuses anything less).
#   AWS_REGION=eu-west-1 bash infra/create-secrets.sh [name-prefix]
set -euo pipefail
prefix="${1:-orderflow}"
command -v aws >/dev/null || { echo "the AWS CLI is required" >&2; exit 1; }
tmp="$(mktemp)"; chmod 600 "$tmp"; trap 'rm -f "$tmp"' EXIT
overrides=()
ask() { # parameter, secret name, what to paste
  local param="$1" name="$prefix/$2" value arn
  if [ "$2" = ops-api-token ]; then
    value="$(openssl rand -hex 32)"; echo "[secrets] $name: generated (32 random bytes, hex)" >&2
  else
    read -r -s -p "[secrets] $name ($3): " value; echo >&2
  fi
  [ -n "$value" ] || { echo "[secrets] $name: empty, stopping" >&2; exit 1; }
  printf '%s' "$value" > "$tmp"; value=""
  if arn="$(aws secretsmanager describe-secret --secret-id "$name" --query ARN --output text 2>/dev/null)"; then
    aws secretsmanager put-secret-value --secret-id "$arn" --secret-string "file://$tmp" >/dev/null
  else
    arn="$(aws secretsmanager create-secret --name "$name" --secret-string "file://$tmp" --query ARN --output text)"
  fi
  : > "$tmp"
  overrides+=("$param=$arn")
}
ask GatewayApiKeySecretArn gateway-api-key "Stripe secret key, sk_live_... or sk_test_..."
ask OpsApiTokenSecretArn ops-api-token "generated"
ask CarrierApiKeySecretArn carrier-api-key "EasyPost API key"
ask CarrierWebhookSecretSecretArn carrier-webhook-secret "EasyPost webhook HMAC secret"
ask GatewayWebhookSecretSecretArn gateway-webhook-secret "Stripe webhook signing secret, whsec_..."
ask WarehouseApiTokensSecretArn warehouse-api-tokens 'JSON: {"wh-east": "<token>", "wh-west": "<token>"}'
echo "[secrets] done; the operator token is in $prefix/ops-api-token (aws secretsmanager get-secret-value)." >&2
echo "--parameter-overrides ${overrides[*]}"
