# Dataflow flex template image of one function folder: `modelfn build functions/<name> --target dataflow`
# copies this file into the build context beside the sources, the pinned requirements.txt, launch.py
# and metadata.json. One image for the launcher and the workers (Google's "same image" pattern):
# Beam's SDK image of the pinned release, with the flex template launcher copied in; Beam's own
# boot stays the entry point, so the workers start from it, and Dataflow runs the launcher itself.
#   docker build --build-arg IMAGE=<registry>/<name>-dataflow:<tag> -t <that tag> .
#   gcloud dataflow flex-template build gs://<bucket>/templates/<name>.json --image <that tag> \
#     --sdk-language PYTHON --metadata-file metadata.json
ARG LAUNCHER_IMAGE=gcr.io/dataflow-templates-base/python{{pyshort}}-template-launcher-base
ARG BASE_IMAGE=apache/beam_python{{python}}_sdk:{{beam}}
FROM ${LAUNCHER_IMAGE} AS launcher
FROM ${BASE_IMAGE}
ARG IMAGE=""

COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /template
# The file pins the whole closure (Beam at the base image's release), so --no-deps brings nothing else.
COPY requirements.txt .
RUN pip install --no-deps -r requirements.txt
COPY . .
RUN python -m compileall -q /template

# The launcher runs launch.py; the workers import modelfn and the hooks from the same folder, and
# start from this image (the template passes it as sdk_container_image).
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/launch.py \
    MODELFN_FUNCTION_FOLDER=/template \
    MODELFN_SDK_IMAGE=${IMAGE} \
    PYTHONPATH=/template
ENTRYPOINT ["/opt/apache/beam/boot"]
