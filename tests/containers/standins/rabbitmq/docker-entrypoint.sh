#!/bin/sh
# Test fixture: as the official image, the default user, password and vhost come from the
# environment, and the server runs as rabbitmq.
set -eu
if [ "$1" = rabbitmq-server ] && [ "$(id -u)" = 0 ]; then
    mkdir -p /etc/rabbitmq/conf.d
    {
        echo "loopback_users = none"
        echo "listeners.tcp.default = 5672"
        [ -n "${RABBITMQ_DEFAULT_USER:-}" ] && echo "default_user = $RABBITMQ_DEFAULT_USER"
        [ -n "${RABBITMQ_DEFAULT_PASS:-}" ] && echo "default_pass = $RABBITMQ_DEFAULT_PASS"
        [ -n "${RABBITMQ_DEFAULT_VHOST:-}" ] && echo "default_vhost = $RABBITMQ_DEFAULT_VHOST"
        true
    } > /etc/rabbitmq/conf.d/10-defaults.conf
    chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq
    HOME=/var/lib/rabbitmq exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
fi
exec "$@"
