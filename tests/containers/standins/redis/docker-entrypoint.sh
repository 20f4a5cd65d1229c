#!/bin/sh
# Test fixture: as the official image, redis-server runs as redis and owns /data.
set -eu
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"
