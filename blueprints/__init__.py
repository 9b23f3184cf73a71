"""The Functions app's triggers, one blueprint per kind of input.

Each trigger parses its input, calls one operation of `kvca_core.operations`
and maps the result or the error to its output (`respond.py`); nothing else.
"""

from blueprints.est import bp as est
from blueprints.eventgrid import bp as eventgrid
from blueprints.http import bp as http
from blueprints.revocation import bp as revocation
from blueprints.timer import bp as timer

ALL = (eventgrid, timer, http, revocation, est)
