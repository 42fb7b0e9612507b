# One image for every pipeline stage; each function picks its handler with ImageConfig.Command.
FROM public.ecr.aws/lambda/python:3.12

COPY pyproject.toml README.md ${LAMBDA_TASK_ROOT}/build/
COPY layers ${LAMBDA_TASK_ROOT}/build/layers
RUN pip install --no-cache-dir ${LAMBDA_TASK_ROOT}/build \
    && rm -rf ${LAMBDA_TASK_ROOT}/build \
    && python -m compileall -q /var/lang/lib/python3.12/site-packages

COPY functions ${LAMBDA_TASK_ROOT}/functions
RUN python -m compileall -q ${LAMBDA_TASK_ROOT}/functions
