/// The Vim classifiers registered by the official code, under their registered names and short aliases.
public enum VimRegistry {
    /// One registered model.
    public struct Entry: Sendable {
        /// The name the official code registers (`timm.create_model` name).
        public let name: String
        /// The short alias accepted on the command line.
        public let alias: String
        /// Its configuration.
        public let configuration: VimConfiguration
        /// ImageNet-1k top-1 of the released checkpoint, in percent.
        public let publishedTop1: Double
    }

    /// Every registered model, smallest first.
    public static let entries: [Entry] = [
        Entry(
            name: "vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
            alias: "vim-t", configuration: VimConfiguration(embedDimension: 192), publishedTop1: 76.1),
        Entry(
            name: "vim_tiny_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
            alias: "vim-t-stride8", configuration: VimConfiguration(stride: 8, embedDimension: 192), publishedTop1: 78.3
        ),
        Entry(
            name: "vim_small_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
            alias: "vim-s", configuration: VimConfiguration(embedDimension: 384), publishedTop1: 80.5),
        Entry(
            name: "vim_small_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
            alias: "vim-s-stride8", configuration: VimConfiguration(stride: 8, embedDimension: 384), publishedTop1: 81.6
        ),
        Entry(
            name: "vim_base_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_middle_cls_token_div2",
            alias: "vim-b", configuration: VimConfiguration(embedDimension: 768), publishedTop1: 81.9),
    ]

    /// The entry with this registered name or alias (case-insensitive).
    public static func entry(named name: String) throws -> Entry {
        let key = name.lowercased()
        guard let entry = entries.first(where: { $0.name == key || $0.alias == key }) else {
            throw VimError.unknownModel(name: name, known: entries.map(\.alias))
        }
        return entry
    }

    /// The registered entry whose configuration equals `configuration`, if any.
    public static func entry(matching configuration: VimConfiguration) -> Entry? {
        entries.first { $0.configuration == configuration }
    }
}
