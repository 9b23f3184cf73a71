"""Private networking (main.bicep's vnetEnabled, off by default): a VNet the app integrates with,
private endpoints with their DNS zones for the vault, the host storage (blob, table) and the
ledger (table), public network access off on those; the CRL account and the app's inbound
endpoint stay public. Checked under both settings of the parameter."""

from __future__ import annotations

import json

import pytest

from bicepwalk import INFRA, accessor_path, call, load

PRIVATE_ACCOUNTS = {
    # main.bicep module: (file, resource type)
    "storage": ("app/storage.bicep", "Microsoft.Storage/storageAccounts"),
    "ledgerStorage": ("app/ledger-storage.bicep", "Microsoft.Storage/storageAccounts"),
    "keyVault": ("app/keyvault.bicep", "Microsoft.KeyVault/vaults"),
}
# Private endpoint module -> (what it reaches, group ID, DNS zone output of network.bicep).
ENDPOINTS = {
    "vaultEndpoint": (["vaultId"], "vault", "vaultZoneId"),
    "hostBlobEndpoint": (["storage", "outputs", "id"], "blob", "blobZoneId"),
    "hostTableEndpoint": (["storage", "outputs", "id"], "table", "tableZoneId"),
    "ledgerEndpoint": (["ledgerStorage", "outputs", "id"], "table", "tableZoneId"),
}
ZONES = {
    "vaultZone": "privatelink.vaultcore.azure.net",
    "blobZone": "privatelink.blob.${environment().suffixes.storage}",
    "tableZone": "privatelink.table.${environment().suffixes.storage}",
}


def evaluate(expression, vnet_enabled: bool):
    """main.bicep's `vnetEnabled ? a : b` for one setting; anything else as it is."""
    if isinstance(expression, dict) and expression.get("operator", {}).get("type") == "conditional":
        operands = expression["operator"]["operands"]
        assert operands["condition"] == "vnetEnabled", operands["condition"]
        return operands["true_value"] if vnet_enabled else operands["false_value"]
    return expression


def _main():
    return load("main.bicep")


def _network():
    return load("app/network.bicep")


def test_private_networking_is_an_option_off_by_default():
    main = _main()
    assert main.params["vnetEnabled"].type == "bool" and main.params["vnetEnabled"].default is False
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]["vnetEnabled"]["value"]
    assert mapped == "${KVCA_DEPLOY_VNET=false}"
    assert main.modules["network"].condition == "vnetEnabled"
    for module in ENDPOINTS:
        assert main.modules[module].condition == "vnetEnabled"


@pytest.mark.parametrize("vnet_enabled, access, default_action", [(True, "Disabled", "Deny"),
                                                                   (False, "Enabled", "Allow")])
def test_public_network_access_follows_the_option(vnet_enabled, access, default_action):
    main = _main()
    for module, (path, rtype) in PRIVATE_ACCOUNTS.items():
        params = main.modules[module].body["params"]
        passed = {name: evaluate(main.resolve(params[name]), vnet_enabled)
                  for name in ("publicNetworkAccess", "networkDefaultAction")}
        assert passed == {"publicNetworkAccess": access, "networkDefaultAction": default_action}, module
        resource = load(path).one(rtype)
        assert resource.get("properties.publicNetworkAccess") == "publicNetworkAccess"
        assert resource.get("properties.networkAcls.defaultAction") == "networkDefaultAction"


@pytest.mark.parametrize("path", sorted({path for path, _ in PRIVATE_ACCOUNTS.values()}))
def test_each_module_is_private_unless_told_otherwise(path):
    # Secure by default, and the defaults are what checkov checks (it reads a parameter's
    # default, not main.bicep's value): Disabled and Deny, with no @allowed that would hide them.
    template = load(path)
    assert template.params["publicNetworkAccess"].default == "Disabled"
    assert template.params["networkDefaultAction"].default == "Deny"
    for name in ("publicNetworkAccess", "networkDefaultAction"):
        assert "allowed" not in template.params[name].decorators
        # checkov resolves names across all files at once: a main.bicep variable of this name
        # would, depending on hash order, stand in for the default (and crash CKV_AZURE_189).
        assert name not in _main().variables


@pytest.mark.parametrize("vnet_enabled", [True, False])
def test_the_crl_account_and_the_app_inbound_stay_public(vnet_enabled):
    # Relying parties fetch CRLs anonymously over plain HTTP (RFC 5280 4.2.1.13) and ask the app's
    # OCSP route from anywhere, whatever the option.
    crl = load("app/crl-storage.bicep").one("Microsoft.Storage/storageAccounts")
    assert crl.get("properties.publicNetworkAccess") == "Enabled"
    assert "publicNetworkAccess" not in _main().modules["crlStorage"].body["params"]
    site = load("app/function.bicep").one("Microsoft.Web/sites")
    assert site.get("properties.publicNetworkAccess") == "Enabled"


@pytest.mark.parametrize("vnet_enabled", [True, False])
def test_the_app_sends_its_outbound_traffic_through_the_vnet_exactly_with_the_option(vnet_enabled):
    passed = evaluate(_main().modules["functionApp"].body["params"]["virtualNetworkSubnetId"], vnet_enabled)
    if vnet_enabled:
        assert accessor_path(passed) == ["network", "outputs", "appSubnetId"]
    else:
        assert passed == ""
    site = load("app/function.bicep").one("Microsoft.Web/sites")
    property_ = site.get("properties.virtualNetworkSubnetId")["operator"]["operands"]
    assert call(property_["condition"]) == ("empty", {"item_to_test": "virtualNetworkSubnetId"})
    assert (property_["true_value"], property_["false_value"]) == (None, "virtualNetworkSubnetId")


def test_the_vnet_has_a_delegated_app_subnet_and_a_private_endpoint_subnet():
    network = _network()
    subnets = {s.name: s for s in network.of_type("Microsoft.Network/virtualNetworks/subnets")}
    assert set(subnets) == {"app", "private-endpoints"}
    [delegation] = subnets["app"].get("properties.delegations")
    assert delegation["properties"]["serviceName"] == "Microsoft.App/environments"  # Flex Consumption
    assert subnets["private-endpoints"].get("properties.privateEndpointNetworkPolicies") == "Disabled"
    assert accessor_path(network.outputs["appSubnetId"]["value"]) == [subnets["app"].symbol, "id"]
    assert accessor_path(network.outputs["privateEndpointSubnetId"]["value"]) == \
        [subnets["private-endpoints"].symbol, "id"]


def test_each_privatelink_zone_is_linked_to_the_vnet():
    network = _network()
    zones = {r.symbol: network.resolve(r.body["name"]) for r in network.of_type("Microsoft.Network/privateDnsZones")}
    assert zones == ZONES
    vnet = network.one("Microsoft.Network/virtualNetworks")
    links = {r.body["parent"]: r for r in network.of_type("Microsoft.Network/privateDnsZones/virtualNetworkLinks")}
    assert set(links) == set(ZONES)
    for link in links.values():
        assert link.get("properties.registrationEnabled") is False
        assert accessor_path(link.get("properties.virtualNetwork.id")) == [vnet.symbol, "id"]
        assert link.get("location") == "global"
    for symbol in ZONES:
        assert accessor_path(network.outputs[symbol + "Id"]["value"]) == [symbol, "id"]


@pytest.mark.parametrize("module", sorted(ENDPOINTS))
def test_each_private_endpoint_reaches_its_sub_resource_and_writes_its_zone(module):
    target, group, zone = ENDPOINTS[module]
    main = _main()
    assert main.module_paths[module] == "app/private-endpoint.bicep"
    params = main.modules[module].body["params"]
    assert (accessor_path(params["targetId"]), params["groupId"]) == (target, group)
    assert accessor_path(params["dnsZoneId"]) == ["network", "outputs", zone]
    assert accessor_path(params["subnetId"]) == ["network", "outputs", "privateEndpointSubnetId"]


def test_the_vault_endpoint_reaches_the_vault_kvca_uses_new_or_existing():
    main = _main()
    vault_id = call(main.variables["vaultId"])
    assert vault_id[0] == "resource_id"
    # resourceId(subscription().subscriptionId, vaultResourceGroupName, 'Microsoft.KeyVault/vaults', vaultName)
    assert {v for v in vault_id[1].values() if isinstance(v, str)} == \
        {"vaultResourceGroupName", "Microsoft.KeyVault/vaults", "vaultName"}
    assert main.modules["vaultEndpoint"].body["dependsOn"] == ["keyVault"]


def test_the_endpoint_module_names_the_group_and_the_zone_it_is_given():
    template = load("app/private-endpoint.bicep")
    endpoint = template.one("Microsoft.Network/privateEndpoints")
    [connection] = endpoint.get("properties.privateLinkServiceConnections")
    assert connection["properties"] == {"privateLinkServiceId": "targetId", "groupIds": ["groupId"]}
    assert endpoint.get("properties.subnet") == {"id": "subnetId"}
    assert template.params["groupId"].decorators["allowed"] == ["vault", "blob", "table"]
    group = template.one("Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
    assert group.body["parent"] == endpoint.symbol
    [config] = group.get("properties.privateDnsZoneConfigs")
    assert config["properties"] == {"privateDnsZoneId": "dnsZoneId"}


@pytest.mark.parametrize("vnet_enabled", [True, False])
def test_what_is_private_under_each_setting(vnet_enabled):
    """The whole picture for one setting: which sub-resources get an endpoint, which accounts are closed."""
    main = _main()
    deployed = {"vnetEnabled": vnet_enabled}  # each endpoint module's condition, evaluated
    endpoints = sorted((ENDPOINTS[m][0][0], ENDPOINTS[m][1]) for m in ENDPOINTS
                       if deployed[main.modules[m].condition])
    closed = sorted(m for m in PRIVATE_ACCOUNTS
                    if evaluate(main.resolve(main.modules[m].body["params"]["publicNetworkAccess"]), vnet_enabled)
                    == "Disabled")
    if vnet_enabled:
        assert endpoints == [("ledgerStorage", "table"), ("storage", "blob"), ("storage", "table"), ("vaultId", "vault")]
        assert closed == ["keyVault", "ledgerStorage", "storage"]
    else:
        assert endpoints == [] and closed == []
