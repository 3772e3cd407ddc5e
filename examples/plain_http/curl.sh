#!/usr/bin/env bash
# The extraction example with curl: ./examples/plain_http/curl.sh [BASE_URL] [MODEL]
set -euo pipefail
BASE_URL=${1:-http://localhost:8000/v1}
MODEL=${2:-smollm2-135m-instruct}
SCHEMA=$(cat "$(dirname "$0")/../extraction/schema.json")
curl -sS "$BASE_URL/chat/completions" -H 'Content-Type: application/json' -d @- <<JSON
{"model": "$MODEL", "max_tokens": 200,
 "messages": [{"role": "system", "content": "Extract the contact details from the user's message."},
              {"role": "user", "content": "Hi, Grace Hopper here from Remington Rand. Invoice 4471 was charged twice this month; please call me back on +1 555 0100 or write to grace@remington.example."}],
 "response_format": {"type": "json_schema", "json_schema": {"name": "Contact", "strict": true, "schema": $SCHEMA}}}
JSON
echo
