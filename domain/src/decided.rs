//! The part of cqrs-es's `Aggregate` that every aggregate here writes the
//! same way: its types, and a `handle` that applies whatever the
//! aggregate's own `decide` yields, event by event, as it writes them.

/// Inside `impl Aggregate for X`: `TYPE`, the associated types (no
/// services) and `handle` by `X::decide`.
macro_rules! decided_aggregate {
    ($type:literal, $command:ty, $event:ty, $error:ty) => {
        const TYPE: &'static str = $type;
        type Command = $command;
        type Event = $event;
        type Error = $error;
        type Services = ();

        async fn handle(
            &mut self,
            command: $command,
            _: &(),
            sink: &cqrs_es::event_sink::EventSink<Self>,
        ) -> Result<(), $error> {
            for event in self.decide(command)? {
                sink.write(event, self).await;
            }
            Ok(())
        }
    };
}

pub(crate) use decided_aggregate;
