"""Distinct id types, so an order id cannot be passed where a device id is expected (mypy checks).

At run time each is a plain `str` (`new_id("ord")` and friends draw them in `bridge.ids`).
"""

from __future__ import annotations

from typing import NewType

__all__ = [
    "AccountId",
    "DeliveryId",
    "DeviceId",
    "EndpointId",
    "EventId",
    "InstanceId",
    "MerchantId",
    "OrderId",
    "PaymentId",
    "SessionId",
]

MerchantId = NewType("MerchantId", str)  # mch_...
AccountId = NewType("AccountId", str)  # acc_...: a receiving account (收款码) of a merchant
OrderId = NewType("OrderId", str)  # ord_...
PaymentId = NewType("PaymentId", str)  # pay_...
DeviceId = NewType("DeviceId", str)  # dev_...
EventId = NewType("EventId", str)  # evt_...: a bridge event (not a device's report event id)
EndpointId = NewType("EndpointId", str)  # whe_...
DeliveryId = NewType("DeliveryId", str)  # dlv_...
SessionId = NewType("SessionId", str)  # a dashboard session
InstanceId = NewType("InstanceId", str)  # inst_...: one running `paybridge serve`
