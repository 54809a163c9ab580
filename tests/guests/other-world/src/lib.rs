//! A valid component of another world: healer must refuse it with a clear error.

wit_bindgen::generate!({
    inline: "
        package test:other;
        world other {
            export hello: func() -> string;
        }
    ",
});

struct Other;

impl Guest for Other {
    fn hello() -> String {
        "hello".to_owned()
    }
}

export!(Other);
