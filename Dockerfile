FROM python:3.11-slim
WORKDIR /app
# torch first, from the constraints file, so no dependency resolves another build. Pass
# --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index> to skip the CUDA packages.
ARG TORCH_INDEX_URL=
COPY constraints.txt ./
RUN pip install --no-cache-dir -c constraints.txt torch ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
COPY pyproject.toml README.md ./
COPY partsbin partsbin
COPY parts parts
COPY registry registry
COPY client client
COPY trainer trainer
COPY migrations migrations
RUN pip install --no-cache-dir -c constraints.txt ".[all]"
ENV PARTSBIN_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["partsbin", "serve", "--host", "0.0.0.0", "--port", "8000"]
