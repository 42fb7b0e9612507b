# One image for every pipeline stage; each function picks its handler with ImageConfig.Command.
# 3.13 as the endpoint: datasketches has no 3.14 wheel yet (infra/bundling.py).
FROM public.ecr.aws/lambda/python:3.13

# The same pins as local development (requirements.lock), then the package itself.
COPY requirements.lock ${LAMBDA_TASK_ROOT}/build/
RUN pip install --no-cache-dir --requirement ${LAMBDA_TASK_ROOT}/build/requirements.lock
COPY pyproject.toml README.md ${LAMBDA_TASK_ROOT}/build/
COPY layers ${LAMBDA_TASK_ROOT}/build/layers
RUN pip install --no-cache-dir --no-deps ${LAMBDA_TASK_ROOT}/build \
    && rm -rf ${LAMBDA_TASK_ROOT}/build \
    && python -m compileall -q /var/lang/lib/python3.13/site-packages

COPY functions ${LAMBDA_TASK_ROOT}/functions
RUN python -m compileall -q ${LAMBDA_TASK_ROOT}/functions
