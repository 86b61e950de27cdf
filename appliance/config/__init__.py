"""The call center's configuration: records, the YAML document, import and export."""

from appliance.config.records import CONFIG_RECORDS, Configuration
from appliance.config.service import export_configuration, import_configuration, open_store
from appliance.config.yamldoc import dump_document, load_document

__all__ = [
    "CONFIG_RECORDS",
    "Configuration",
    "dump_document",
    "export_configuration",
    "import_configuration",
    "load_document",
    "open_store",
]
