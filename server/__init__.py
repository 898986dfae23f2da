"""modelfly's production server: gunicorn's processes, HTTP on an asyncio loop in each worker, the
guard around Firefly's app, micro-batching, metrics and logs. It plugs into the core
(modelfly/) through the served functions of predict.py; the core knows nothing of it."""
