//! Chat template rendering: the GGUF `tokenizer.chat_template` (Jinja) rendered
//! with minijinja, with `add_generation_prompt = true`. It does not tokenize.

use crate::error::EngineError;
use crate::request::ChatMessage;
use minijinja::{Environment, context};

/// ChatML, used when the GGUF file carries no template.
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

fn raise_exception(msg: String) -> Result<String, minijinja::Error> {
    Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compile `source` (or ChatML when `None`).
    pub fn new(source: Option<String>, bos_token: String, eos_token: String) -> Result<Self, EngineError> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source.unwrap_or_else(|| CHATML.to_string()))
            .map_err(|e| EngineError::Template(e.to_string()))?;
        Ok(Self { env, bos_token, eos_token })
    }

    /// Render the conversation, ending with the assistant's generation prompt.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let msgs: Vec<_> =
            messages.iter().map(|m| context! { role => m.role.clone(), content => m.content.clone() }).collect();
        let tmpl = self.env.get_template("chat").map_err(|e| EngineError::Template(e.to_string()))?;
        tmpl.render(context! {
            messages => msgs,
            add_generation_prompt => true,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
        })
        .map_err(|e| EngineError::Template(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use crate::template::*;

    #[test]
    fn chatml_renders() -> Result<(), EngineError> {
        let t = ChatTemplate::new(None, String::new(), "<|im_end|>".into())?;
        let s = t.render(&[ChatMessage { role: "user".into(), content: "Hi".into() }])?;
        assert_eq!(s, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        Ok(())
    }
}
