"""A Flower Grid that runs every message through the real ClientApp in this process.

Each message and reply is deflated to the objects Flower stores and transfers and inflated
again, as on the wire, so records, dtypes and bytes are those of a deployment; only the
transport (and the fresh process per message) is missing. Node 1000 + i is client i.
"""
from __future__ import annotations

from flwr.app import Context, Error, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

from fslora_flower.client_app import app as client_app


def over_the_wire(message):
    """``message`` as the receiver gets it: serialised objects, re-inflated, with its id."""
    contents = {oid: obj.deflate() for oid, obj in get_all_nested_objects(message).items()}
    received = inflate_object_from_contents(message.object_id, contents)
    received.metadata.__dict__["_message_id"] = received.object_id
    return received


class InProcessGrid(Grid):
    """silent: node ids that never answer (a dead or hung node); gone: node ids for which the
    SuperLink itself answers "node unavailable" (a node that stopped heart-beating);
    node_config: extra keys per node."""

    def __init__(self, run_config: dict, n_clients: int, *, silent=(), gone=(), node_config=None, first=0):
        self.contexts = {}
        for i in range(n_clients):
            cfg = {"partition-id": i, "num-partitions": n_clients, **(node_config or {}).get(i, {})}
            self.contexts[1000 + first + i] = Context(run_id=1, node_id=1000 + first + i, node_config=cfg,
                                                      state=RecordDict(), run_config=dict(run_config))
        self.silent, self.gone = set(silent), set(gone)
        self.replies = {}
        self.sent = []          # every message as the nodes received it

    def set_run(self, run):
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        from flwr.app import Message
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
        ids = []
        for message in messages:
            node = message.metadata.dst_node_id
            if node not in self.contexts:
                ids.append(None)
                continue
            message.metadata.__dict__["_message_id"] = message.object_id   # as Flower's Grid does on push
            received = over_the_wire(message)
            self.sent.append(received)
            ids.append(received.metadata.message_id)
            if node in self.silent:
                continue
            if node in self.gone:   # written by the SuperLink, not by the node
                reply = received.create_error_reply(Error(code=5, reason="Node Unavailable - no heartbeat"))
                reply.metadata.__dict__["_src_node_id"] = 1
                self.replies[received.metadata.message_id] = over_the_wire(reply)
                continue
            try:
                reply = client_app(received, self.contexts[node])
            except Exception as ex:  # what Flower's ClientApp runner sends back
                reply = received.create_error_reply(Error(code=2, reason=str(type(ex)) + ":<'" + str(ex) + "'>"))
            self.replies[received.metadata.message_id] = over_the_wire(reply)
        return ids

    def pull_messages(self, message_ids):
        return [self.replies.pop(mid) for mid in list(message_ids) if mid in self.replies]

    def send_and_receive(self, messages, *, timeout=None):
        return self.pull_messages(self.push_messages(messages))


class InProcessDeployment:
    """``deploy.LocalDeployment`` for the CLI, without Flower processes: ``run`` calls the ServerApp
    in this process on an InProcessGrid and reports what Flower records (status, the exception as
    status details) as a RunResult of run ``RUN_ID``."""

    RUN_ID = 4242
    port, start_seconds = 0, 0.0

    def __init__(self, n_nodes, log_dir, node_configs=None, **kw):
        from flwr.common.config import parse_config_args
        self.n_nodes = n_nodes
        # each node's extra --node-config, parsed as flower-supernode parses it
        self.node_config = {i: parse_config_args([c]) for i, c in enumerate(node_configs or []) if c}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, app_dir, run_config, *, timeout=None, on_line=None):
        from flwr.app import Context, RecordDict

        from fslora_flower import server_app
        from fslora_cli.flower_deploy import RunResult
        context = Context(run_id=self.RUN_ID, node_id=1, node_config={}, state=RecordDict(), run_config=run_config)
        try:
            server_app.main(InProcessGrid(run_config, self.n_nodes, node_config=self.node_config), context)
        except Exception as exc:
            return RunResult(str(self.RUN_ID), "finished:failed", f"ServerApp failed with exception: {exc}", 0.0, {})
        return RunResult(str(self.RUN_ID), "finished:completed", "", 0.0, {})
