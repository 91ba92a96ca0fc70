mod plugins;

fn main() {}
