// A React component using the code `syncline codegen` generated for ../../project.
// Type-checked by tests/test_codegen.py; every @ts-expect-error line must be an error.
import { useAction, useMutation, useQuery } from "convex/react";
import { api, internal } from "../convex/_generated/api";
import type { Doc, Id } from "../convex/_generated/dataModel";

export function Channel(props: { channel: string; me: Id<"users"> }) {
  const messages = useQuery(api.messages.list, { channel: props.channel });
  const few = useQuery(api.messages.list, { channel: props.channel, limit: 5 });
  const count = useQuery(api.messages.count);
  const user = useQuery(api.admin.users.get, { id: props.me });
  const skipped = useQuery(api.messages.list, "skip");
  const send = useMutation(api.messages.send);
  const analyse = useAction(api.messages.analyse);

  const newest: Doc<"messages"> | undefined = messages?.[0];
  const likes: bigint | undefined = newest?.likes;
  const status: "sent" | "read" | undefined = newest?.status;
  const file: Id<"_storage"> | undefined = newest?.attachment;
  const name: string | undefined = user?.name;
  const total: number | undefined = count;
  void [few, skipped, likes, status, file, name, total, internal.messages.mark_read];

  // @ts-expect-error a number is not a channel name
  useQuery(api.messages.list, { channel: 42 });
  // @ts-expect-error `channel` is required
  useQuery(api.messages.list, {});
  // @ts-expect-error no such argument
  useQuery(api.messages.list, { channel: "x", since: 1 });
  // @ts-expect-error an id of another table
  useQuery(api.admin.users.get, { id: newest!._id });
  // @ts-expect-error internal functions are not in `api`
  void api.messages.mark_read;
  // @ts-expect-error a mutation is not a query
  useQuery(api.messages.send, { channel: "x", body: "y", author: props.me });

  return (
    <div>
      {messages?.map((m) => (
        <p key={m._id}>{m.body}</p>
      ))}
      <button onClick={() => void send({ channel: props.channel, body: "hi", author: props.me })} />
      <button onClick={() => void analyse({ text: "hello" }).then((r) => r.shout.toLowerCase())} />
    </div>
  );
}
