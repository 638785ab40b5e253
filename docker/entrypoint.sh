#!/bin/sh
# The images' entrypoint: the server command given first (dixie-serve, or bin/serve), then the arguments after the
# image name. The server listens on 0.0.0.0:12345, where the image's HEALTHCHECK and EXPOSE expect it: an address
# or port given after the image name would leave the health check probing nothing, so it is refused.
server=$1
shift
for arg in "$@"; do
  case "$arg" in
    --host | --host=* | --port | --port=*)
      echo "dixie's image: $arg is not taken here. The server listens on 0.0.0.0:12345 inside the container, where its health check asks; publish it on another address or port with docker run -p, e.g. -p 127.0.0.1:8080:12345" >&2
      exit 2
      ;;
  esac
done
exec "$server" --host 0.0.0.0 --port 12345 "$@"
