#!/bin/sh
# The image's start command: put the shipped profiles into the models volume, build the
# profile's offline models there if it has any (a no-op once built, and for profiles whose
# models are downloaded from the hub), then serve on $STREAMST_PORT. Extra arguments go to
# `streamst serve` (e.g. --max-sessions 4). The token comes from $STREAMST_TOKEN.
set -eu
mkdir -p "$STREAMST_MODELS/profiles"
cp /opt/streamst/profiles/*.json "$STREAMST_MODELS/profiles/"
streamst models build --profile "$STREAMST_PROFILE"
exec streamst serve --profile "$STREAMST_PROFILE" --host 0.0.0.0 --port "$STREAMST_PORT" "$@"
