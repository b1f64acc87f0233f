//! A waiting `GET /watch`, as the REST API holds it: the engine wakes it (the Hub's
//! `Output::Wake`) whenever the client's queue may have grown, and dropping it ends the watch
//! (`Input::Unwatch`). See `driver::Node::watch`.

/// One waiting `GET /watch`, as the engine holds it: woken whenever the client's queue may
/// have grown. Dropping it ends the watch.
pub struct Watch {
    /// Receives a unit whenever the queue may have grown (a full channel holds one already).
    pub woken: async_std::channel::Receiver<()>,
    /// Tells the engine the watch ended (once, on drop).
    end: Option<Box<dyn FnOnce() + Send + Sync>>,
    /// Keeps the channel open for a watch nobody wakes ([`Watch::idle`]).
    _open: Option<async_std::channel::Sender<()>>,
}

impl Watch {
    /// A watch woken through `woken`; `end` runs when it is dropped.
    pub fn new(
        woken: async_std::channel::Receiver<()>,
        end: impl FnOnce() + Send + Sync + 'static,
    ) -> Watch {
        Watch {
            woken,
            end: Some(Box::new(end)),
            _open: None,
        }
    }

    /// A watch that is never woken.
    pub fn idle() -> Watch {
        let (open, woken) = async_std::channel::bounded(1);
        Watch {
            woken,
            end: None,
            _open: Some(open),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            end();
        }
    }
}
