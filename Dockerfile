# The streamst service image. Models are not baked in: the `default` profile downloads
# SenseVoiceSmall, FSMN-VAD, CT-Transformer and Qwen3-1.7B on first use into the mounted
# cache (/models, HF_HOME, MODELSCOPE_CACHE). `--profile tiny` works offline after
# `streamst models build --profile tiny`.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends libportaudio2 libsndfile1 gcc g++ \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# CPU wheel; for a GPU image install a CUDA build of torch here instead.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY streamst ./streamst
RUN pip install --no-cache-dir -e .

ENV STREAMST_MODELS=/app/models HF_HOME=/models/hf MODELSCOPE_CACHE=/models/modelscope
VOLUME ["/models"]
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8765/healthz').status != 200)"
ENTRYPOINT ["streamst"]
CMD ["serve", "--profile", "default", "--host", "0.0.0.0", "--port", "8765"]
