"""The Azure Functions app: a doorway. It registers the triggers and sets up logging.

Everything the triggers do is in `kvca_core.operations`; see blueprints/.
"""

import logging

import azure.functions as func

import blueprints
from kvca_core.vault import quiet_azure_logging

quiet_azure_logging()  # the SDK's per-request HTTP log lines would drown kvca's one line per operation
logging.getLogger("kvca_core").setLevel(logging.INFO)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in blueprints.ALL:
    app.register_functions(blueprint)
