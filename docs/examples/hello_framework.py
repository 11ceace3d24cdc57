#!/usr/bin/env python3
"""A complete agora framework in Python with the standard library only.

It speaks the Connect protocol (JSON over HTTP/1.1) that every master serves
beside gRPC: Subscribe is a server stream of length-prefixed JSON messages,
every other call is one POST with a JSON body. It launches COUNT tasks that
print a line and exit, acknowledges their status updates, declines the
offers it does not need, and tears the framework down when all are done.

    python3 docs/examples/hello_framework.py http://127.0.0.1:7100 3

Field names are the proto's in lowerCamelCase (docs/api.md). Any master
will do: a follower answers HTTP 503 (code "unavailable") with the leader's
address in the Agora-Leader header, which this sketch follows. Unlike the Go
SDK it does not resubscribe when the stream ends (a leader failover).
"""
import json
import struct
import sys
import urllib.error
import urllib.request

MASTER = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7100"
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 3
SERVICE = "/agora.v1.SchedulerService/"


def post(method, data, content_type, timeout):
    """POSTs to the leader: a follower answers 503 with the leader's
    address in the Agora-Leader header, and we go there instead."""
    global MASTER
    for _ in range(5):
        req = urllib.request.Request(MASTER + SERVICE + method, data=data,
                                     headers={"Content-Type": content_type})
        try:
            return urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            leader = e.headers.get("Agora-Leader")
            if e.code != 503 or not leader:
                raise SystemExit("%s: HTTP %d: %s" % (method, e.code, e.read().decode()))
            MASTER = leader if leader.startswith("http") else "http://" + leader
    raise SystemExit("%s: no leader after 5 redirects" % method)


def call(method, body):
    with post(method, json.dumps(body).encode(), "application/json", 30) as resp:
        return json.load(resp)


def stream(method, body):
    """Yields the messages of a Connect server stream. A stream refused by
    a follower ends at once with an "unavailable" error that names the
    leader (a LeaderRedirect detail); we subscribe there instead."""
    global MASTER
    data = json.dumps(body).encode()
    for _ in range(5):
        redirect = None
        with post(method, b"\x00" + struct.pack(">I", len(data)) + data, "application/connect+json", 120) as resp:
            while True:
                head = resp.read(5)
                if len(head) < 5:
                    return
                flags, n = head[0], struct.unpack(">I", head[1:])[0]
                msg = json.loads(resp.read(n))
                if not flags & 0x02:
                    yield msg
                    continue
                err = msg.get("error")  # end of stream: an error, if any
                if not err:
                    return
                for d in err.get("details", []):
                    redirect = d.get("debug", {}).get("leaderAddress") or redirect
                if err.get("code") != "unavailable" or not redirect:
                    raise SystemExit("%s: %s" % (method, err))
                break
        MASTER = redirect
    raise SystemExit("%s: no leader after 5 redirects" % method)


def main():
    info = {"name": "hello-py", "roles": ["dev"], "failoverTimeoutSeconds": 60}
    call_id, launched, finished = None, 0, 0
    for event in stream("Subscribe", {"frameworkInfo": info}):
        if "subscribed" in event:
            s = event["subscribed"]
            call_id = {"frameworkId": s["frameworkId"], "streamToken": s["streamToken"]}
            print("subscribed as", s["frameworkId"])
        elif "offers" in event:
            for offer in event["offers"]["offers"]:
                if launched >= COUNT:
                    call("Decline", {"call": call_id, "offerIds": [offer["id"]], "refuseSeconds": 60})
                    continue
                task = {"taskId": "hello-%d" % launched, "name": "hello", "agentId": offer["agentId"],
                        "resources": [{"name": "cpus", "scalar": 0.1}, {"name": "mem", "scalar": 32}],
                        "command": {"value": "echo hello from $HOSTNAME"}}
                call("Accept", {"call": call_id, "offerIds": [offer["id"]],
                                "operations": [{"type": "OPERATION_TYPE_LAUNCH", "tasks": [task]}]})
                launched += 1
        elif "update" in event:
            st = event["update"]["status"]
            print(st["taskId"], st["state"])
            if st.get("uuid"):
                call("Acknowledge", {"call": call_id, "agentId": st["agentId"],
                                     "taskId": st["taskId"], "uuid": st["uuid"]})
            if st["state"] in ("TASK_STATE_FINISHED", "TASK_STATE_FAILED", "TASK_STATE_KILLED",
                               "TASK_STATE_ERROR", "TASK_STATE_LOST"):
                finished += 1
                if finished == COUNT:
                    call("Teardown", {"call": call_id})
                    print("all", COUNT, "tasks done; framework torn down")
                    return
        elif "error" in event:
            raise SystemExit("framework error: %s" % event["error"])


if __name__ == "__main__":
    main()
