# The imnet app image: CLI, crawler workers, the MTurk-compatible server and CPU training.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 NLTK_DATA=/usr/local/share/nltk_data

# WordNet 3.0 for nltk without a download; fashion-mnist gives the demo's fixture web real
# product photos (optional: the demo falls back to other packaged photographs without it).
RUN apt-get update \
 && apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/*

# CPU torch first so the project's torch requirement is already met and no CUDA build is pulled.
# Set TORCH_INDEX_URL to your PyTorch CPU wheel index if the default index only offers CUDA builds.
ARG TORCH_INDEX_URL=""
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY imnet ./imnet
COPY db ./db
COPY harvest ./harvest
COPY curation ./curation
COPY mturk ./mturk
COPY train ./train
RUN pip install ".[postgres,demo]" && imnet setup --no-download

RUN useradd --create-home --uid 1000 imnet && mkdir -p /data && chown imnet /data \
 && chmod -R a+rX "$NLTK_DATA"
USER imnet
VOLUME ["/data"]
ENV IMNET_DATA_DIR=/data
EXPOSE 8643
CMD ["imnet", "--help"]
