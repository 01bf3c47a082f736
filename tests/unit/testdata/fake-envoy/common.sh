# Sourced by the fake envoys: answer --version, record the arguments and the pid.
if [ "$1" = "--version" ]; then
    echo ""
    echo "envoy  version: 0123456789abcdef0123456789abcdef01234567/1.40.0/Clean/RELEASE/BoringSSL"
    exit 0
fi
config=""
prev=""
for arg in "$@"; do
    if [ "$prev" = "--config-path" ]; then config="$arg"; fi
    prev="$arg"
done
dir=$(dirname "${config:-./bootstrap.yaml}")
printf '%s\n' "$@" > "$dir/fake-envoy.args.tmp" && mv "$dir/fake-envoy.args.tmp" "$dir/fake-envoy.args"
echo $$ > "$dir/fake-envoy.pid.tmp" && mv "$dir/fake-envoy.pid.tmp" "$dir/fake-envoy.pid"
