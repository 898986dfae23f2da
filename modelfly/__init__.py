"""modelfly's core: the model cards, the registry that loads and checks the models, and the
input contract. Plain Python: it knows no HTTP server (server/) and no client (client/)."""
