"""The main journey through the generated Python SDK only (no raw HTTP): profile, a new key,
a data source with pushed rows, a Klip, a dashboard showing it with its value, a report
generated and downloaded, and a list paged through.

    PULSEBOARD_URL=http://127.0.0.1:3000 PULSEBOARD_KEY=pb_live_... python journey.py

Every step's answer must parse into its model: a step that answers anything else (an error,
or an answer the generated code could not read) stops the journey with the status.
"""

import datetime
import os
import sys
import time

from pulseboard_client import AuthenticatedClient
from pulseboard_client.api.api_keys import create_api_key
from pulseboard_client.api.auth import get_profile
from pulseboard_client.api.dashboards import add_klip_instances, create_dashboard, get_dashboard
from pulseboard_client.api.datasources import create_datasource, replace_datasource_data
from pulseboard_client.api.klips import create_klip, list_klips
from pulseboard_client.api.reports import (
    create_report,
    download_report,
    generate_report,
    get_report_run,
)
from pulseboard_client.models import (
    ApiKeyCreate,
    DashboardCreate,
    DataRow,
    DatasourceCreate,
    DatasourceCreateFormatType0,
    Error,
    KlipCreate,
    KlipCreateType,
    KlipDisplay,
    KlipDisplayFormatType0,
    KlipInstancesAdd,
    KlipInstancesAddKlipsItem,
    KlipQuery,
    KlipQueryAggregate,
    ReportCreate,
    ReportFormat,
)
from pulseboard_client.types import Response


def must(step: str, response: Response, model: type):
    """The parsed answer of a step, which must be `model`."""
    if not isinstance(response.parsed, model):
        sys.exit(f"{step}: {response.status_code} {response.content[:500]!r}")
    return response.parsed


def main() -> None:
    api = AuthenticatedClient(
        base_url=os.environ.get("PULSEBOARD_URL", "http://127.0.0.1:3000") + "/api/v1",
        token=os.environ["PULSEBOARD_KEY"],
        prefix="",
        auth_header_name="kf-api-key",
    )
    profile = must("profile", get_profile.sync_detailed(client=api), get_profile.GetProfileResponse200)
    print("signed in as", profile.data.email)

    key = must(
        "api key",
        create_api_key.sync_detailed(client=api, body=ApiKeyCreate(name="journey key")),
        create_api_key.CreateApiKeyResponse201,
    )
    print("new key", key.data.id)

    ds = must(
        "data source",
        create_datasource.sync_detailed(
            client=api,
            body=DatasourceCreate(name="Py sales", format_=DatasourceCreateFormatType0.JSON),
        ),
        create_datasource.CreateDatasourceResponse201,
    ).data
    # The Klip counts New York days (the company's zone); yesterday in UTC is within the
    # last 7 of them at any hour, while today in UTC is tomorrow there after 19:00 or 20:00.
    utc_today = datetime.datetime.now(datetime.timezone.utc).date()
    today = (utc_today - datetime.timedelta(days=1)).isoformat()
    rows = []
    for region, amount in (("EMEA", 120), ("APAC", 80)):
        row = DataRow()
        row.additional_properties = {"date": today, "region": region, "amount": amount}
        rows.append(row)
    must(
        "push",
        replace_datasource_data.sync_detailed(ds.id, client=api, body=rows),
        replace_datasource_data.ReplaceDatasourceDataResponse200,
    )

    klip = must(
        "klip",
        create_klip.sync_detailed(
            client=api,
            body=KlipCreate(
                name="Py sales this week",
                type_=KlipCreateType.NUMBER,
                datasource_id=ds.id,
                query=KlipQuery(
                    value="amount",
                    aggregate=KlipQueryAggregate.SUM,
                    time_column="date",
                    range_="last_7_days",
                ),
                display=KlipDisplay(format_=KlipDisplayFormatType0.CURRENCY, target=500),
            ),
        ),
        create_klip.CreateKlipResponse201,
    ).data

    dashboard = must(
        "dashboard",
        create_dashboard.sync_detailed(client=api, body=DashboardCreate(name="Py sales")),
        create_dashboard.CreateDashboardResponse201,
    ).data
    must(
        "add klip",
        add_klip_instances.sync_detailed(
            dashboard.id,
            client=api,
            body=KlipInstancesAdd(
                klips=[KlipInstancesAddKlipsItem(klip_id=klip.id, region="main", position=0)]
            ),
        ),
        add_klip_instances.AddKlipInstancesResponse200,
    )
    shown = must(
        "read dashboard",
        get_dashboard.sync_detailed(dashboard.id, client=api),
        get_dashboard.GetDashboardResponse200,
    ).data
    value = shown.klip_instances[0].value.current
    print("dashboard value", value)
    if value != 200:
        sys.exit(f"expected the Klip's value 200, got {value}")

    report = must(
        "report",
        create_report.sync_detailed(
            client=api,
            body=ReportCreate(name="Py growth", klip_ids=[klip.id], format_=ReportFormat.HTML),
        ),
        create_report.CreateReportResponse201,
    ).data
    run = must(
        "generate",
        generate_report.sync_detailed(report.id, client=api),
        generate_report.GenerateReportResponse202,
    ).data
    status = str(run.status)
    for _ in range(120):
        if status in ("succeeded", "failed"):
            break
        time.sleep(0.5)
        run = must(
            "run",
            get_report_run.sync_detailed(report.id, run.id, client=api),
            get_report_run.GetReportRunResponse200,
        ).data
        status = str(run.status)
    if status != "succeeded":
        sys.exit(f"the run ended {status}")
    file = download_report.sync_detailed(report.id, client=api)
    if file.status_code != 200 or not file.content:
        sys.exit(f"download: {file.status_code}")
    print("report bytes", len(file.content))

    seen, offset = 0, 0
    while True:
        page = must(
            "list klips",
            list_klips.sync_detailed(client=api, limit=1, offset=offset),
            list_klips.ListKlipsResponse200,
        )
        seen += len(page.data.klips)
        if not page.meta.next_:
            break
        offset += 1
    print("klips paged", seen)
    if seen < 1:
        sys.exit("the list paged through no Klip")
    if isinstance(file.parsed, Error):
        sys.exit("the download parsed as an error")
    print("journey ok")


if __name__ == "__main__":
    main()
