"""The Azure Functions app: a doorway. It registers the triggers and sets up logging.

Everything the triggers do is in `kvca_core.operations`; see blueprints/.
"""

import azure.functions as func

import blueprints
from kvca_core import telemetry

telemetry.configure()  # kvca's records at INFO, the SDKs' quiet; exported to Application Insights when set

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in blueprints.ALL:
    app.register_functions(blueprint)
