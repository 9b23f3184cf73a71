"""The Functions app: Flex Consumption, one user-assigned identity, HTTPS and
TLS 1.2 only, no FTP, and app settings that are exactly the settings the code
reads (kvca_core.settings is the one list)."""

from __future__ import annotations

import json
import re

from bicepwalk import INFRA, ROOT, accessor_path, app_settings, call, load
from kvca_core.settings import SETTING_NAMES, SETTINGS, Settings

DEFAULTS = {s.name: s.default for s in SETTINGS}


def _function():
    return load("app/function.bicep")


def _site():
    return _function().one("Microsoft.Web/sites")


def _settings():
    return app_settings(_site())


def test_plan_is_flex_consumption():
    plan = _function().one("Microsoft.Web/serverfarms")
    assert plan.get("sku") == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan.get("properties.reserved") is True  # Linux
    assert accessor_path(_site().get("properties.serverFarmId")) == [plan.symbol, "id"]


# The interpreters .ci/run runs the whole suite on; nothing else may be deployed.
TESTED_PYTHONS = ["3.11", "3.13"]


def test_runtime_is_a_python_kvca_is_tested_on():
    template, main = _function(), load("main.bicep")
    runtime = _site().get("properties.functionAppConfig.runtime")
    assert runtime == {"name": "python", "version": "pythonVersion"}
    for t in (template, main):
        assert t.params["pythonVersion"].decorators["allowed"] == TESTED_PYTHONS
        assert t.params["pythonVersion"].default == "3.11"
    assert main.modules["functionApp"].body["params"]["pythonVersion"] == "pythonVersion"
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]["pythonVersion"]["value"]
    assert mapped == "${KVCA_DEPLOY_PYTHON_VERSION=3.11}"


def test_the_ci_runs_the_suite_on_every_python_the_bicep_allows():
    script = (ROOT / ".ci" / "run").read_text()
    for version in TESTED_PYTHONS:
        assert f"find_python {version}" in script, f".ci/run does not test Python {version}"
    requires = re.search(r'requires-python = ">=(3\.\d+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert requires == TESTED_PYTHONS[0]


def test_scale_and_concurrency_are_set():
    scale = _site().get("properties.functionAppConfig.scaleAndConcurrency")
    assert set(scale) == {"maximumInstanceCount", "instanceMemoryMB"}


def test_deployment_package_is_reached_through_the_user_assigned_identity():
    storage = _site().get("properties.functionAppConfig.deployment.storage")
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "deploymentIdentityId",
    }


def test_app_runs_as_its_user_assigned_identity_only():
    identity = _site().get("identity")
    assert identity["type"] == "UserAssigned"
    # The app's own identity, and the deployment identity the platform writes the package with.
    assert [k.strip("'") for k in identity["userAssignedIdentities"]] == ["${identityId}", "${deploymentIdentityId}"]
    assert _settings()["AZURE_CLIENT_ID"] == "identityClientId"


def test_app_is_https_only_with_tls_1_2_and_no_ftp():
    site = _site()
    assert site.get("properties.httpsOnly") is True
    assert site.get("properties.siteConfig.minTlsVersion") == "1.2"
    assert site.get("properties.siteConfig.scmMinTlsVersion") == "1.2"
    assert site.get("properties.siteConfig.ftpsState") == "Disabled"
    policies = {r.name: r.get("properties.allow")
                for r in _function().of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")}
    assert policies == {"ftp": False, "scm": False}


# Settings the Bicep already sets for code that is being written (the ledger's table URL, read
# by kvca_core once the ledger lands): allowed to be missing from kvca_core.settings and
# local.settings.sample.json, nothing else is. Remove a name here once the code reads it.


def _kvca_names(names):
    return {n for n in names if n.startswith("KVCA_") or n == "AZURE_CLIENT_ID"}


def test_app_setting_names_equal_the_settings_the_code_reads():
    names = _kvca_names(_settings())
    assert names == set(SETTING_NAMES), (
        f"in Bicep only: {sorted(names - SETTING_NAMES)}; in kvca_core.settings only: {sorted(SETTING_NAMES - names)}")


def test_app_setting_names_equal_local_settings_sample():
    # The issue's own wording: Azure and local runs set the same kvca settings.
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert _kvca_names(_settings()) == _kvca_names(sample)


def test_azure_client_id_is_the_app_identity():
    assert _settings()["AZURE_CLIENT_ID"] == "identityClientId"


def test_host_storage_and_insights_go_through_the_identity():
    settings = _settings()
    assert settings["AzureWebJobsStorage__accountName"]
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert "AzureWebJobsStorage" not in settings, "a connection string would need shared keys"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert accessor_path(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == \
        ["appInsights", "properties", "ConnectionString"]


def test_no_setting_carries_a_key_or_a_setting_flex_rejects():
    settings = _settings()
    text = json.dumps(settings)
    for secret_marker in ("AccountKey", "SharedAccessKey", "InstrumentationKey=", "listKeys"):
        assert secret_marker not in text
    # Flex Consumption takes the runtime from functionAppConfig and rejects these.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION",
                "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"} & set(settings)


def _unwrap_string(value):
    """`string(x)` -> x: how an int parameter becomes an app setting."""
    converted = call(value)
    if converted and converted[0] == "string":
        return converted[1]["value_to_convert"]
    return value


def _setting_default(template, value):
    """The value a setting gets when nobody overrides it, or None if it is computed."""
    value = _unwrap_string(value)
    if isinstance(value, str) and value in template.variables:
        return None  # computed (KVCA_TRUST_EASY_AUTH follows the auth settings; tested on its own)
    if isinstance(value, str) and value in template.params:
        default = template.params[value].default
        return None if default is None else str(default)
    if isinstance(value, str) and "${" not in value:
        return value
    return None


def test_fixed_and_default_setting_values_equal_the_code_defaults():
    template = _function()
    checked = 0
    for name, value in _settings().items():
        if name not in DEFAULTS or DEFAULTS[name] is None:
            continue
        default = _setting_default(template, value)
        if default is not None:
            checked += 1
            assert default == DEFAULTS[name], f"{name}: Bicep gives {default!r}, kvca_core.settings {DEFAULTS[name]!r}"
    assert checked >= 8


def test_main_parameter_defaults_equal_the_code_defaults():
    # main.bicep parameters that feed a KVCA_* setting through the function module.
    main = load("main.bicep")
    function = _function()
    module_params = main.modules["functionApp"].body["params"]
    settings = _settings()
    checked = 0
    for name, value in settings.items():
        if name not in DEFAULTS or DEFAULTS[name] is None:
            continue
        inner = _unwrap_string(value)
        if not (isinstance(inner, str) and inner in function.params):
            continue
        passed = module_params.get(inner)
        if isinstance(passed, str) and passed in main.params and main.params[passed].has_default:
            checked += 1
            assert str(main.params[passed].default) == DEFAULTS[name], f"main.bicep {passed} vs {name}"
    assert checked >= 5


def test_azd_variable_defaults_equal_the_code_defaults():
    # main.parameters.json maps `${KVCA_X=default}`: the default must be the code's.
    text = (INFRA / "main.parameters.json").read_text()
    pairs = re.findall(r"\$\{(KVCA_[A-Z_]+)=([^}]*)\}", text)
    runtime = [(n, d) for n, d in pairs if n in DEFAULTS]
    assert runtime, "no runtime setting is mapped from the azd environment"
    for name, default in runtime:
        assert default == DEFAULTS[name], f"main.parameters.json {name}={default!r}, code {DEFAULTS[name]!r}"
    # Deployment-only switches must not look like runtime settings.
    for name, _ in pairs:
        assert name in SETTING_NAMES or name.startswith("KVCA_DEPLOY_"), name


def test_vault_url_setting_is_built_from_the_vault_name():
    main = load("main.bicep")
    assert main.variables["vaultUrl"] == "https://${vaultName}${environment().suffixes.keyvaultDns}/"
    params = main.modules["functionApp"].body["params"]
    assert (params["vaultUrl"], params["vaultName"]) == ("vaultUrl", "vaultName")
    assert accessor_path(params["eventGridTopicEndpoint"]) == ["topic", "outputs", "endpoint"]


def _auth():
    return load("app/function-auth.bicep").one("Microsoft.Web/sites/config")


def test_app_service_authentication_is_entra_id_next_to_function_keys_and_on_exactly_when_trusted():
    template = _function()
    auth = _auth()
    # A module of its own, deployed exactly when an app registration is named, onto this app.
    module = template.modules["authSettings"]
    assert template.module_paths["authSettings"] == "function-auth.bicep"
    assert module.condition == "easyAuthEnabled"
    assert module.body["params"] == {"functionAppName": {"operator": {"type": "property_accessor", "operands": {
        "operand_1": _site().symbol, "operand_2": "name"}}}, "authClientId": "authClientId", "authTenantId": "authTenantId"}
    parent = auth.parent
    assert auth.name == "authsettingsV2" and parent.existing and parent.type == "Microsoft.Web/sites"
    assert parent.name == "functionAppName"
    assert template.variables["easyAuthEnabled"] == {"operator": {"type": "not", "operands": {
        "bool_value": {"function": {"type": "empty", "parameters": {"item_to_test": "authClientId"}}}}}}
    # The app believes X-MS-CLIENT-PRINCIPAL exactly when App Service authentication is on.
    assert call(_settings()["KVCA_TRUST_EASY_AUTH"]) == ("string", {"value_to_convert": "easyAuthEnabled"})
    assert auth.get("properties.platform.enabled") is True
    # Callers without a token pass on to the host's function-key check and kvca's rules.
    assert auth.get("properties.globalValidation") == {"requireAuthentication": False,
                                                        "unauthenticatedClientAction": "AllowAnonymous"}
    aad = auth.get("properties.identityProviders.azureActiveDirectory")
    assert aad["enabled"] is True and aad["registration"]["clientId"] == "authClientId"
    assert "authTenantId" in repr(aad["registration"]["openIdIssuer"])
    assert "clientSecretSettingName" not in aad["registration"], "an API validating bearer tokens needs no secret"
    assert set(map(repr, aad["validation"]["allowedAudiences"])) == {repr("api://${authClientId}"), repr("authClientId")}
    assert auth.get("properties.login.tokenStore.enabled") is False
    assert auth.get("properties.httpSettings.requireHttps") is True
    main = load("main.bicep")
    assert main.params["authClientId"].default == ""
    assert main.modules["functionApp"].body["params"]["authClientId"] == "authClientId"


def test_the_client_certificate_header_is_trusted_exactly_when_the_site_asks_for_client_certificates():
    """X-ARR-ClientCert is App Service's only while clientCertEnabled is on; otherwise a client could
    send the header itself. One parameter sets both; Optional keeps every other route open."""
    site, settings = _site(), _settings()
    assert site.get("properties.clientCertEnabled") == "estClientCertificates"
    assert site.get("properties.clientCertMode") == "Optional"
    trust = settings["KVCA_TRUST_CLIENT_CERT_HEADER"]
    assert isinstance(trust, dict) and "estClientCertificates" in json.dumps(trust), trust
    assert _function().params["estClientCertificates"].default is False
    main = load("main.bicep")
    assert main.params["estClientCertificates"].default is False
    assert main.modules["functionApp"].body["params"]["estClientCertificates"] == "estClientCertificates"


def test_every_instance_together_signs_external_csrs_within_half_the_vault_key_limit():
    """KVCA_EXTERNAL_SIGN_SHARE is per instance: the Bicep writes 0.5 / maximumInstanceCount, six decimals.
    The expression is evaluated here as Bicep would (integer division, padLeft) at the bounds."""
    value = _settings()["KVCA_EXTERNAL_SIGN_SHARE"]
    assert "500000 / maximumInstanceCount" in json.dumps(value) and "padLeft" in json.dumps(value), value
    bounds = _function().params["maximumInstanceCount"].decorators
    for count in (bounds["min_value"], 7, 40, bounds["max_value"]):
        share = float("0." + str(500000 // count).rjust(6, "0"))
        assert 0 < share <= 1 and share * count <= 0.5, (count, share)
        Settings.from_env({"KVCA_VAULT_URL": "https://corp.vault.azure.net/", "KVCA_EXTERNAL_SIGN_SHARE": f"{share:.6f}"})  # the app accepts it
