//! Every stage `type` and the file implementing it. Adding a stage kind is one line here.

use crate::topology::StageConfig;
use crate::{operators, sinks, sources};
use serde::de::DeserializeOwned;
use toml::de::ValueDeserializer;

/// Where a stage sits in the data flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Source,
    Operator,
    Sink,
}

pub struct Registration {
    pub type_name: &'static str,
    pub role: Role,
    pub parse: fn(ValueDeserializer<'_>) -> Result<Box<dyn StageConfig>, toml::de::Error>,
}

fn parse<T: StageConfig + DeserializeOwned + 'static>(
    d: ValueDeserializer<'_>,
) -> Result<Box<dyn StageConfig>, toml::de::Error> {
    Ok(Box::new(T::deserialize(d)?))
}

const fn entry<T: StageConfig + DeserializeOwned + 'static>(
    type_name: &'static str,
    role: Role,
) -> Registration {
    Registration {
        type_name,
        role,
        parse: parse::<T>,
    }
}

pub const REGISTRY: &[Registration] = &[
    entry::<sources::replay::ReplayConfig>("replay", Role::Source),
    entry::<sources::kafka::KafkaConfig>("kafka", Role::Source),
    entry::<operators::transform::TransformConfig>("transform", Role::Operator),
    entry::<operators::window::WindowConfig>("window", Role::Operator),
    entry::<sinks::console::ConsoleConfig>("console", Role::Sink),
    entry::<sinks::file::FileConfig>("file", Role::Sink),
    entry::<sinks::chart::ChartConfig>("chart", Role::Sink),
    entry::<sinks::mongodb::MongodbConfig>("mongodb", Role::Sink),
    entry::<sinks::blackhole::BlackholeConfig>("blackhole", Role::Sink),
];

pub fn find(type_name: &str) -> Option<&'static Registration> {
    REGISTRY.iter().find(|r| r.type_name == type_name)
}

pub fn type_names() -> Vec<&'static str> {
    REGISTRY.iter().map(|r| r.type_name).collect()
}
