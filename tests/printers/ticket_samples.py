"""Sample kitchen tickets shared by the renderer and emulator tests (and the docs' sample PNG)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from kprintd.render import TicketDocument, TicketLine

JAKARTA = timezone(timedelta(hours=7))
SENT_AT = datetime(2024, 5, 17, 5, 34, 12, tzinfo=UTC)  # 12:34 in Jakarta

NASI_GORENG = TicketLine(
    2,
    "Nasi Goreng Spesial Seafood",
    ("Extra pedas", "Tanpa telur"),
    "Alergi kacang! Jangan pakai minyak kacang",
)
SATE = TicketLine(1, "Sate Ayam (10 tusuk)", ("Bumbu kacang terpisah",))
CREME = TicketLine(1, "Crème brûlée", (), "Birthday candle please")
ES_TEH = TicketLine(3, "Es Teh Manis", ("Less sugar",), station="bar")

ORDER = TicketDocument(
    ticket_id=1042,
    station="kitchen",
    ticket_type="order",
    bill_number="B-2024-0042",
    sent_at=SENT_AT,
    lines=(NASI_GORENG, SATE),
    table_number="12",
    queue_number=42,
)

ADDITION = TicketDocument(
    ticket_id=1043,
    station="kitchen",
    ticket_type="addition",
    bill_number="B-2024-0042",
    sent_at=SENT_AT + timedelta(minutes=9),
    lines=(TicketLine(1, "Kerupuk Udang"),),
    table_number="12",
    queue_number=42,
)

VOID = TicketDocument(
    ticket_id=1044,
    station="kitchen",
    ticket_type="void",
    bill_number="B-2024-0042",
    sent_at=SENT_AT + timedelta(minutes=11),
    lines=(TicketLine(1, "Sate Ayam (10 tusuk)", (), "Customer changed their mind"),),
    table_number="12",
    queue_number=42,
)

REPRINT = TicketDocument(
    ticket_id=1050,
    station="dessert",
    ticket_type="order",
    bill_number="T-0107",
    sent_at=SENT_AT + timedelta(minutes=20),
    lines=(CREME,),
    bill_type="takeaway",
    customer_name="Budi Santoso",
    is_reprint=True,
    original_ticket_id=1049,
)

RETRY = TicketDocument(
    ticket_id=1051,
    station="bar",
    ticket_type="order",
    bill_number="D-0033",
    sent_at=SENT_AT + timedelta(minutes=21),
    lines=(ES_TEH, TicketLine(2, "Jus Alpukat")),
    bill_type="delivery",
    customer_name="Siti Rahayu (GoFood)",
    queue_number=7,
    is_retry=True,
    attempt=2,
)

CHECKER = TicketDocument(
    ticket_id=1052,
    station="checker",
    ticket_type="checker",
    bill_number="B-2024-0042",
    sent_at=SENT_AT,
    lines=(
        TicketLine(2, "Nasi Goreng Spesial Seafood", ("Extra pedas",), station="kitchen"),
        ES_TEH,
        TicketLine(1, "Sate Ayam (10 tusuk)", station="kitchen"),
        TicketLine(1, "Crème brûlée", station="dessert"),
    ),
    table_number="12",
    queue_number=42,
)


VOID_REPRINT_RETRY = TicketDocument(
    ticket_id=1053,
    station="kitchen",
    ticket_type="void",
    bill_number="B-2024-0042",
    sent_at=SENT_AT + timedelta(minutes=30),
    lines=(TicketLine(2, "Nasi Goreng Spesial Seafood"),),
    table_number="12",
    queue_number=42,
    is_reprint=True,
    original_ticket_id=1044,
    is_retry=True,
    attempt=3,
)

SAMPLES: dict[str, TicketDocument] = {
    "order": ORDER,
    "addition": ADDITION,
    "void": VOID,
    "reprint": REPRINT,
    "retry": RETRY,
    "checker": CHECKER,
    "void-reprint-retry": VOID_REPRINT_RETRY,
}
