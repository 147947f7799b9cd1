#!/usr/bin/env bash
# Install (once) and start the app on the embedded default data (digits + shipped checkpoints).
cd "$(dirname "$0")/.."
source scripts/_env.sh
exec streamlit run app.py "$@"
