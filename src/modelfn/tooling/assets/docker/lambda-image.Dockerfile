# AWS Lambda container image of one function folder (for models whose dependencies do not fit
# a 250 MB zip); `modelfn build functions/<name> --target lambda-image` copies this file into the
# build context beside the sources, the generated lambda_function.py and requirements.txt.
# The base is a build argument, as in cloudrun.Dockerfile (the tests use a stand-in with the same
# entry point: awslambdaric under the Runtime Interface Emulator).
ARG BASE_IMAGE=public.ecr.aws/lambda/python:{{python}}
FROM ${BASE_IMAGE}

COPY requirements.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir --no-deps -r ${LAMBDA_TASK_ROOT}/requirements.txt --target ${LAMBDA_TASK_ROOT}
COPY . ${LAMBDA_TASK_ROOT}/
RUN python -m compileall -q ${LAMBDA_TASK_ROOT}

CMD ["lambda_function.handler"]
